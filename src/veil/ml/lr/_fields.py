"""Checked reading of the messages vertical LR parties exchange.

Every LR message is a small frozen dataclass with ``to_wire()`` (a plain dict the codec
encodes) and ``from_wire(obj, ...)``, which reads it through :class:`Fields`: a missing
field, a value of the wrong type, a number out of range or an array of the wrong size
raises :class:`~veil.errors.ProtocolError` naming the message's tag and the field,
before the protocol touches the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import numpy.typing as npt

from veil.crypto.he import EncryptedArray, HEPublicKey
from veil.errors import ProtocolError

MAX_TEXT = 4096
"""Longest string field (error texts, digests, party names)."""

MAX_INT_BITS = 1024
"""Widest integer field (masked values are far narrower, see :mod:`._homomorphic`)."""


class Fields:
    """One received message: a mapping whose fields are read by name and checked."""

    def __init__(self, obj: object, tag: str) -> None:
        self.tag = str(tag)
        if not isinstance(obj, dict):
            raise ProtocolError(f"{self.tag}: expected a mapping, got {type(obj).__name__}")
        self._obj: dict[object, object] = obj

    def fail(self, name: str, problem: str) -> NoReturn:
        """Raise the :class:`ProtocolError` of a bad field."""
        raise ProtocolError(f"{self.tag}.{name}: {problem}")

    def value(self, name: str) -> object:
        """The raw value of a field that must be present."""
        if name not in self._obj:
            self.fail(name, "missing")
        return self._obj[name]

    def integer(self, name: str, lo: int = 0, hi: int | None = None) -> int:
        """An ``int`` (not a bool) in ``[lo, hi]``."""
        v = self.value(name)
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(name, f"expected an integer, got {type(v).__name__}")
        if v < lo or (hi is not None and v > hi):
            self.fail(name, f"{v} is outside [{lo}, {hi if hi is not None else 'inf'}]")
        return v

    def flag(self, name: str) -> bool:
        v = self.value(name)
        if not isinstance(v, bool):
            self.fail(name, f"expected true/false, got {type(v).__name__}")
        return v

    def text(self, name: str, max_len: int = MAX_TEXT) -> str:
        v = self.value(name)
        if not isinstance(v, str):
            self.fail(name, f"expected a string, got {type(v).__name__}")
        if len(v) > max_len:
            self.fail(name, f"{len(v)} characters, at most {max_len}")
        return v

    def texts(self, name: str, max_items: int) -> tuple[str, ...]:
        v = self.value(name)
        if not isinstance(v, list) or len(v) > max_items:
            self.fail(name, f"expected a list of at most {max_items} strings")
        if not all(isinstance(x, str) and len(x) <= MAX_TEXT for x in v):
            self.fail(name, "holds a non-string")
        return tuple(v)

    def data(self, name: str, size: int) -> bytes:
        v = self.value(name)
        if not isinstance(v, bytes) or len(v) != size:
            self.fail(name, f"expected {size} bytes")
        return v

    def mapping(self, name: str) -> dict[str, object]:
        v = self.value(name)
        if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
            self.fail(name, f"expected a mapping, got {type(v).__name__}")
        return v

    def integers(self, name: str, n: int, max_bits: int = MAX_INT_BITS) -> list[int]:
        """A list of exactly ``n`` Python integers, each below ``2**max_bits`` in size."""
        v = self.value(name)
        if not isinstance(v, list):
            self.fail(name, f"expected a list of {n} integers, got {type(v).__name__}")
        if len(v) != n:
            self.fail(name, f"{len(v)} values, expected {n}")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            self.fail(name, "holds a non-integer")
        if any(x.bit_length() > max_bits for x in v):
            self.fail(name, f"holds an integer wider than {max_bits} bits")
        return v

    def array(self, name: str, n: int, dtype: npt.DTypeLike) -> np.ndarray:
        """A numpy vector of exactly ``n`` values of ``dtype``."""
        v = self.value(name)
        want = np.dtype(dtype)
        if not isinstance(v, np.ndarray) or v.dtype != want or v.shape != (n,):
            got = f"{v.dtype}{v.shape}" if isinstance(v, np.ndarray) else type(v).__name__
            self.fail(name, f"expected a {want} vector of {n}, got {got}")
        return v

    def cipher(self, name: str, pk: HEPublicKey, n: int) -> EncryptedArray:
        """A one-dimensional unpacked encrypted array of exactly ``n`` ciphertexts under
        ``pk`` (the count is checked before the ciphertexts are read)."""
        return self._cipher(self.value(name), name, pk, n)

    def ciphers(self, name: str, pk: HEPublicKey, sizes: list[int]) -> list[EncryptedArray]:
        """A list of encrypted arrays of the given lengths."""
        v = self.value(name)
        if not isinstance(v, list) or len(v) != len(sizes):
            self.fail(name, f"expected a list of {len(sizes)} encrypted arrays")
        pairs = enumerate(zip(v, sizes, strict=True))
        return [self._cipher(x, f"{name}[{i}]", pk, k) for i, (x, k) in pairs]

    def _cipher(self, v: object, name: str, pk: HEPublicKey, n: int) -> EncryptedArray:
        if not isinstance(v, dict):
            self.fail(name, f"expected an encrypted array, got {type(v).__name__}")
        shape = v.get("shape")
        if shape != [n]:
            self.fail(name, f"shape {shape!r}, expected [{n}]")
        if "pack" in v:
            self.fail(name, "is packed, expected one value per ciphertext")
        try:
            return EncryptedArray.from_wire(pk, v)
        except ProtocolError as e:
            self.fail(name, str(e))


@dataclass(frozen=True)
class CipherMessage:
    """A message of one encrypted vector (field ``ct``)."""

    ct: EncryptedArray

    def to_wire(self) -> dict[str, object]:
        return {"ct": self.ct.to_wire()}

    @classmethod
    def from_wire(cls, obj: object, tag: str, pk: HEPublicKey, n: int) -> CipherMessage:
        return cls(Fields(obj, tag).cipher("ct", pk, n))


@dataclass(frozen=True)
class IntsMessage:
    """A message of exact integers (field ``values``), e.g. decrypted masked values."""

    values: list[int]

    def to_wire(self) -> dict[str, object]:
        return {"values": self.values}

    @classmethod
    def from_wire(cls, obj: object, tag: str, n: int, max_bits: int) -> IntsMessage:
        return cls(Fields(obj, tag).integers("values", n, max_bits))
