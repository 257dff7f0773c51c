"""Typed reads of received peer messages, for the typed schemas of the ML protocols.

Every protocol message is a dict of named fields (what :func:`veil.codec.decode`
returns). A schema's ``from_wire`` reads it through :class:`Fields`, which checks
each field's presence, type and size and raises :class:`~veil.errors.ProtocolError`
naming the message tag and the field (``bin_sums: field 'features[2].counts' ...``),
never ``KeyError`` or ``TypeError``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from veil.codec import IntArray
from veil.errors import ProtocolError

__all__ = ["Fields"]

_MISSING = object()


class Fields:
    """One received message (or a nested part of it), read field by field.

    ``tag`` names the message in errors; ``path`` is the prefix of nested parts.
    """

    def __init__(self, tag: str, msg: object, path: str = "") -> None:
        self.tag, self.path = str(tag), path
        if not isinstance(msg, dict):
            where = f"field '{path}'" if path else "message"
            raise ProtocolError(f"{self.tag}: {where} is a {type(msg).__name__}, expected a dict")
        self.msg: dict[str, Any] = msg

    def error(self, name: str, problem: str) -> ProtocolError:
        """The error for field ``name``: names the tag and the field."""
        return ProtocolError(f"{self.tag}: field '{self.path}{name}' {problem}")

    def _get(self, name: str) -> Any:
        v = self.msg.get(name, _MISSING)
        if v is _MISSING:
            raise self.error(name, "is missing")
        return v

    def is_set(self, name: str) -> bool:
        """Whether the nullable field ``name`` is not None (missing is an error)."""
        return self._get(name) is not None

    def raw(self, name: str) -> Any:
        """The value as sent (checked by its consumer, e.g. a public key)."""
        return self._get(name)

    def get_dict(self, name: str) -> dict[str, Any]:
        """A dict-valued field as sent (checked by its consumer, e.g. a public key)."""
        v = self._get(name)
        if not isinstance(v, dict):
            raise self.error(name, f"is a {type(v).__name__}, expected a dict")
        return v

    def nested(self, name: str) -> Fields:
        """A dict-valued field, read with the same tag."""
        return Fields(self.tag, self._get(name), f"{self.path}{name}.")

    def item(self, name: str, i: int, value: object) -> Fields:
        """Element ``i`` of the list field ``name``, a dict."""
        return Fields(self.tag, value, f"{self.path}{name}[{i}].")

    def element(self, name: str, i: int, value: object) -> Fields:
        """Element ``i`` of the list field ``name``, any value: read it as field ``""``
        (``f.element("rows", 2, v).int_array("")``)."""
        return Fields(self.tag, {"": value}, f"{self.path}{name}[{i}]")

    def get_int(self, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
        """An integer in ``[lo, hi]`` (bounds optional)."""
        v = self._get(name)
        if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer):
            raise self.error(name, f"is a {type(v).__name__}, expected an int")
        return self._in_range(name, int(v), lo, hi)

    def _in_range(self, name: str, v: int, lo: int | None, hi: int | None) -> int:
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.error(name, f"is {v}, expected {lo if lo is not None else '..'}..{hi}")
        return v

    def get_float(self, name: str) -> float:
        """A finite number."""
        v = self._get(name)
        if isinstance(v, bool | np.bool_) or not isinstance(v, float | int | np.number):
            raise self.error(name, f"is a {type(v).__name__}, expected a number")
        if not math.isfinite(float(v)):
            raise self.error(name, "is not finite")
        return float(v)

    def get_bool(self, name: str) -> bool:
        v = self._get(name)
        if not isinstance(v, bool | np.bool_):
            raise self.error(name, f"is a {type(v).__name__}, expected a bool")
        return bool(v)

    def get_str(self, name: str) -> str:
        v = self._get(name)
        if not isinstance(v, str):
            raise self.error(name, f"is a {type(v).__name__}, expected a str")
        return v

    def get_list(
        self, name: str, *, size: int | None = None, max_size: int | None = None
    ) -> list[Any]:
        """A list of exactly ``size`` or at most ``max_size`` elements."""
        v = self._get(name)
        if not isinstance(v, list | tuple):
            raise self.error(name, f"is a {type(v).__name__}, expected a list")
        self._check_size(name, len(v), size, max_size)
        return list(v)

    def _check_size(self, name: str, n: int, size: int | None, max_size: int | None) -> None:
        if size is not None and n != size:
            raise self.error(name, f"has {n} entries, expected {size}")
        if max_size is not None and n > max_size:
            raise self.error(name, f"has {n} entries, at most {max_size} allowed")

    def int_array(
        self,
        name: str,
        *,
        size: int | None = None,
        max_size: int | None = None,
        lo: int | None = None,
        hi: int | None = None,
    ) -> npt.NDArray[np.int64]:
        """A 1-D integer array (numpy integer array or list of ints) with values in ``[lo, hi]``."""
        v = self._get(name)
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "iu" or v.ndim != 1:
                raise self.error(name, f"is a {v.ndim}-D {v.dtype} array, expected 1-D integers")
        elif not isinstance(v, list | tuple) or any(
            isinstance(e, bool) or not isinstance(e, int) for e in v
        ):
            raise self.error(name, f"is a {type(v).__name__}, expected a list of ints")
        self._check_size(name, len(v), size, max_size)
        try:
            arr = np.asarray(v, dtype=np.int64)
        except OverflowError:
            raise self.error(name, "holds an integer beyond 64 bits") from None
        if arr.size and lo is not None and int(arr.min()) < lo:
            raise self.error(name, f"holds {int(arr.min())}, below {lo}")
        if arr.size and hi is not None and int(arr.max()) > hi:
            raise self.error(name, f"holds {int(arr.max())}, above {hi}")
        return arr

    def float_array(
        self, name: str, *, size: int | None = None, max_size: int | None = None
    ) -> npt.NDArray[np.float64]:
        """A 1-D array of finite numbers (numpy array or list)."""
        v = self._get(name)
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "iuf" or v.ndim != 1:
                raise self.error(name, f"is a {v.ndim}-D {v.dtype} array, expected 1-D numbers")
        elif not isinstance(v, list | tuple) or any(
            isinstance(e, bool) or not isinstance(e, int | float) for e in v
        ):
            raise self.error(name, f"is a {type(v).__name__}, expected a list of numbers")
        self._check_size(name, len(v), size, max_size)
        arr = np.asarray(v, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise self.error(name, "holds a value that is not finite")
        return arr

    def bits(self, name: str, n: int) -> npt.NDArray[np.bool_]:
        """``n`` booleans sent packed (``numpy.packbits``: a uint8 array of ``ceil(n/8)``)."""
        v = self._get(name)
        if not isinstance(v, np.ndarray) or v.dtype != np.uint8 or v.ndim != 1:
            raise self.error(name, f"is a {type(v).__name__}, expected packed bits (uint8)")
        self._check_size(name, v.size, (n + 7) // 8, None)
        return np.unpackbits(v, count=n).astype(bool)

    def ciphertexts(
        self, name: str, *, size: int | None = None, max_size: int | None = None
    ) -> IntArray:
        """Ciphertexts sent as an :class:`~veil.codec.IntArray` (range checked by the key)."""
        v = self._get(name)
        if not isinstance(v, IntArray):
            raise self.error(name, f"is a {type(v).__name__}, expected ciphertexts (IntArray)")
        self._check_size(name, len(v), size, max_size)
        return v

    def wrap(self, name: str, err: Exception) -> ProtocolError:
        """A consumer's error about field ``name`` (e.g. a malformed key), with tag and field."""
        return self.error(name, f"is malformed: {err}")
