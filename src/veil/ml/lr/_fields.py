"""What vertical LR adds to the one message reader, :class:`veil.messages.Fields`:
reading encrypted arrays under a peer's key, and the two messages several LR modules share.

Every LR message is a small frozen dataclass with ``to_wire()`` (a plain dict the codec
encodes) and ``from_wire(obj, ...)``, which reads it through :class:`~veil.messages.Fields`:
a missing field, a value of the wrong type, a number out of range or an array of the wrong
size raises :class:`~veil.errors.ProtocolError` naming the message's tag and the field,
before the protocol touches the value.
"""

from __future__ import annotations

from dataclasses import dataclass

from veil.crypto.he import EncryptedArray, HEPublicKey
from veil.errors import ProtocolError
from veil.messages import Fields

MAX_INT_BITS = 1024
"""Widest integer field (masked values are far narrower, see :mod:`._homomorphic`)."""


def read_cipher(f: Fields, name: str, pk: HEPublicKey, n: int) -> EncryptedArray:
    """Field ``name``: a one-dimensional unpacked encrypted array of exactly ``n``
    ciphertexts under ``pk`` (the count is checked before the ciphertexts are read)."""
    return _cipher(f, f.raw(name), name, pk, n)


def read_ciphers(f: Fields, name: str, pk: HEPublicKey, sizes: list[int]) -> list[EncryptedArray]:
    """Field ``name``: a list of encrypted arrays of the given lengths."""
    v = f.raw(name)
    if not isinstance(v, list) or len(v) != len(sizes):
        f.fail(name, f"expected a list of {len(sizes)} encrypted arrays")
    pairs = enumerate(zip(v, sizes, strict=True))
    return [_cipher(f, x, f"{name}[{i}]", pk, k) for i, (x, k) in pairs]


def _cipher(f: Fields, v: object, name: str, pk: HEPublicKey, n: int) -> EncryptedArray:
    if not isinstance(v, dict):
        f.fail(name, f"expected an encrypted array, got {type(v).__name__}")
    shape = v.get("shape")
    if shape != [n]:
        f.fail(name, f"shape {shape!r}, expected [{n}]")
    if "pack" in v:
        f.fail(name, "is packed, expected one value per ciphertext")
    try:
        return EncryptedArray.from_wire(pk, v)
    except ProtocolError as e:
        f.fail(name, str(e))


@dataclass(frozen=True)
class CipherMessage:
    """A message of one encrypted vector (field ``ct``)."""

    ct: EncryptedArray

    def to_wire(self) -> dict[str, object]:
        return {"ct": self.ct.to_wire()}

    @classmethod
    def from_wire(cls, obj: object, tag: str, pk: HEPublicKey, n: int) -> CipherMessage:
        return cls(read_cipher(Fields(tag, obj), "ct", pk, n))


@dataclass(frozen=True)
class IntsMessage:
    """A message of exact integers (field ``values``), e.g. decrypted masked values."""

    values: list[int]

    def to_wire(self) -> dict[str, object]:
        return {"values": self.values}

    @classmethod
    def from_wire(cls, obj: object, tag: str, n: int, max_bits: int) -> IntsMessage:
        return cls(Fields(tag, obj).integers("values", n, max_bits))
