"""Safe, compact encoding of the values protocols exchange. Never pickle.

Supported: None, bool, int (any size), float, str, bytes, list/tuple, dict with
str keys, numpy arrays (raw bytes + dtype + shape) of the dtypes in
:data:`ARRAY_DTYPES` (bool, 8- to 64-bit ints, float32/64, complex64/128 in either
byte order, bytes ``S1``..``S64``), and :class:`IntArray` (big non-negative integers
at a fixed byte width of at least :data:`MIN_INT_WIDTH`, e.g. ciphertexts). Every
value is a one-byte type tag then its body; lengths are little-endian unsigned.

Decoding a frame from a peer is safe: a malformed frame raises :class:`ProtocolError`
and nothing else. Dtypes are looked up in the allow-list (never parsed by numpy),
every length and count is checked against the bytes actually left in the buffer
before anything is allocated, and the decoded value takes at most about 16 times the
frame's size in memory (the worst case, a list of empty lists, is 13x, since every
element costs at least one byte on the wire; an IntArray of width 8 or more expands
about 5x into Python ints, one of width 2 would be 18x, which is why narrower ones are
refused). ``tests/test_codec.py`` measures these bounds and fuzzes the decoder.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from veil.errors import ProtocolError

_NONE, _FALSE, _TRUE, _INT, _FLOAT, _STR, _BYTES, _LIST, _DICT, _NDARRAY, _INTARRAY = range(11)
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")
_MAX_DEPTH = 64
_MAX_NDIM = 32

MIN_INT_WIDTH = 8
"""Narrowest :class:`IntArray` on the wire: each value becomes a Python int (~36 bytes),
so narrower values would expand a frame many times over. Send small ints as an
``np.int64`` array instead."""


def _array_dtypes() -> dict[bytes, np.dtype[Any]]:
    names = ["bool", "float32", "float64", "complex64", "complex128"]
    names += [f"{s}int{b}" for s in ("", "u") for b in (8, 16, 32, 64)]
    out: dict[bytes, np.dtype[Any]] = {}
    for name in names:
        for order in ("<", ">"):
            dt = np.dtype(name).newbyteorder(order)
            out[dt.str.encode("ascii")] = dt  # '|i1' and '|b1' come out once
    for width in range(1, 65):
        dt = np.dtype(f"S{width}")
        out[dt.str.encode("ascii")] = dt
    return out


ARRAY_DTYPES: dict[bytes, np.dtype[Any]] = _array_dtypes()
"""The array dtypes the codec carries, by their ``dtype.str`` (e.g. ``b'<f8'``)."""


WireValue: TypeAlias = (
    "bool | int | float | str | bytes | IntArray | np.ndarray"
    " | list[WireValue] | dict[str, WireValue] | None"
)
"""What :func:`decode` can return (``encode`` also takes tuples and numpy scalars)."""


@dataclass(frozen=True)
class IntArray:
    """Non-negative big integers sent at a fixed byte width (little-endian)."""

    values: Sequence[int]
    width: int

    def to_bytes(self) -> bytes:
        w = self.width
        try:  # ints and gmpy2 mpz convert themselves (no int() copy of an mpz)
            return b"".join([v.to_bytes(w, "little") for v in self.values])
        except (AttributeError, TypeError):  # e.g. numpy integers
            return b"".join(int(v).to_bytes(w, "little") for v in self.values)

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, width: int) -> IntArray:
        if width < MIN_INT_WIDTH:
            raise ProtocolError(f"IntArray width {width} is below the minimum {MIN_INT_WIDTH}")
        if len(data) % width:
            raise ProtocolError(f"IntArray of {len(data)} bytes is not a multiple of {width}")
        mv = memoryview(data)
        vals = [int.from_bytes(mv[i : i + width], "little") for i in range(0, len(mv), width)]
        return cls(vals, width)

    def __len__(self) -> int:
        return len(self.values)


def encode(value: object) -> bytes:
    """Encode ``value`` to bytes; raises TypeError for anything not listed above."""
    out: list[bytes] = []
    _enc(value, out, 0)
    return b"".join(out)


def _enc(v: Any, out: list[bytes], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise TypeError("value nested too deeply to encode")
    if v is None:
        out.append(bytes((_NONE,)))
    elif v is True or v is False or isinstance(v, np.bool_):
        out.append(bytes((_TRUE if v else _FALSE,)))
    elif isinstance(v, int | np.integer):
        iv = int(v)
        raw = iv.to_bytes((iv.bit_length() + 8) // 8 or 1, "little", signed=True)
        out += [bytes((_INT,)), _U32.pack(len(raw)), raw]
    elif isinstance(v, float | np.floating):
        out += [bytes((_FLOAT,)), _F64.pack(float(v))]
    elif isinstance(v, str):
        raw = v.encode("utf-8")
        out += [bytes((_STR,)), _U64.pack(len(raw)), raw]
    elif isinstance(v, bytes | bytearray | memoryview):
        raw = bytes(v)
        out += [bytes((_BYTES,)), _U64.pack(len(raw)), raw]
    elif isinstance(v, np.ndarray):
        _enc_array(v, out)
    elif isinstance(v, IntArray):
        if v.width < MIN_INT_WIDTH:
            raise TypeError(
                f"IntArray width {v.width} is below {MIN_INT_WIDTH}: send small ints as an "
                "np.int64 array"
            )
        raw = v.to_bytes()
        out += [bytes((_INTARRAY,)), _U32.pack(v.width), _U64.pack(len(raw)), raw]
    elif isinstance(v, list | tuple):
        out += [bytes((_LIST,)), _U32.pack(len(v))]
        for item in v:
            _enc(item, out, depth + 1)
    elif isinstance(v, dict):
        out += [bytes((_DICT,)), _U32.pack(len(v))]
        for k, item in v.items():
            if not isinstance(k, str):
                raise TypeError(f"dict keys must be str to encode, got {type(k).__name__}")
            _enc(k, out, depth + 1)
            _enc(item, out, depth + 1)
    else:
        raise TypeError(f"cannot encode {type(v).__name__} for the wire (pickle is never used)")


def _enc_array(a: np.ndarray, out: list[bytes]) -> None:
    dt = a.dtype.str.encode("ascii")
    if dt not in ARRAY_DTYPES or a.ndim > _MAX_NDIM:
        raise TypeError(
            f"cannot encode a numpy array of dtype {a.dtype} and {a.ndim} dimensions "
            "(object arrays are refused; see veil.codec.ARRAY_DTYPES)"
        )
    a = np.ascontiguousarray(a)
    out += [bytes((_NDARRAY, len(dt))), dt, bytes((a.ndim,))]
    out += [_U64.pack(d) for d in a.shape]
    raw = a.tobytes()
    out += [_U64.pack(len(raw)), raw]


def decode(data: bytes | memoryview) -> Any:
    """Decode bytes made by :func:`encode`; raises ProtocolError (only) on malformed input."""
    try:
        mv = memoryview(data).cast("B")
        value, pos = _dec(mv, 0, 0)
    except ProtocolError:
        raise
    except Exception as e:  # whatever else a crafted frame may trigger is still malformed
        raise ProtocolError(f"malformed message: {type(e).__name__}: {e}") from e
    if pos != len(mv):
        raise ProtocolError(f"malformed message: {len(mv) - pos} trailing bytes")
    return value


def _take(mv: memoryview, pos: int, n: int) -> tuple[memoryview, int]:
    end = pos + n
    if n < 0 or end > len(mv):
        raise ProtocolError("malformed message: length runs past the end")
    return mv[pos:end], end


def _dec(mv: memoryview, pos: int, depth: int) -> tuple[Any, int]:
    if depth > _MAX_DEPTH:
        raise ProtocolError("malformed message: nested too deeply")
    t = mv[pos]
    pos += 1
    if t == _NONE:
        return None, pos
    if t in (_FALSE, _TRUE):
        return t == _TRUE, pos
    if t == _INT:
        (n,) = _U32.unpack_from(mv, pos)
        raw, pos = _take(mv, pos + 4, n)
        return int.from_bytes(raw, "little", signed=True), pos
    if t == _FLOAT:
        return _F64.unpack_from(mv, pos)[0], pos + 8
    if t in (_STR, _BYTES):
        (n,) = _U64.unpack_from(mv, pos)
        raw, pos = _take(mv, pos + 8, n)
        return (bytes(raw).decode("utf-8") if t == _STR else bytes(raw)), pos
    if t == _LIST:
        (n,) = _U32.unpack_from(mv, pos)
        pos += 4
        _check_count(mv, pos, n, 1, "list")
        items = []
        for _ in range(n):
            item, pos = _dec(mv, pos, depth + 1)
            items.append(item)
        return items, pos
    if t == _DICT:
        (n,) = _U32.unpack_from(mv, pos)
        pos += 4
        _check_count(mv, pos, n, 10, "dict")  # a str key (9 bytes or more) and a value
        d: dict[str, Any] = {}
        for _ in range(n):
            k, pos = _dec(mv, pos, depth + 1)
            if not isinstance(k, str):
                raise ProtocolError("malformed message: dict key is not a string")
            d[k], pos = _dec(mv, pos, depth + 1)
        return d, pos
    if t == _NDARRAY:
        return _dec_array(mv, pos)
    if t == _INTARRAY:
        (width,) = _U32.unpack_from(mv, pos)
        (n,) = _U64.unpack_from(mv, pos + 4)
        raw, pos = _take(mv, pos + 12, n)
        return IntArray.from_bytes(raw, width), pos
    raise ProtocolError(f"malformed message: unknown type tag {t}")


def _check_count(mv: memoryview, pos: int, n: int, least: int, what: str) -> None:
    """A container announcing ``n`` items of at least ``least`` bytes each must fit."""
    if n * least > len(mv) - pos:
        raise ProtocolError(f"malformed message: {what} of {n} items runs past the end")


def _dec_array(mv: memoryview, pos: int) -> tuple[np.ndarray, int]:
    n = mv[pos]
    dts, pos = _take(mv, pos + 1, n)
    dtype = ARRAY_DTYPES.get(bytes(dts))
    if dtype is None:
        raise ProtocolError(f"malformed message: refused array dtype {bytes(dts)!r}")
    ndim = mv[pos]
    pos += 1
    if ndim > _MAX_NDIM:
        raise ProtocolError(f"malformed message: array of {ndim} dimensions")
    dims, pos = _take(mv, pos, 8 * ndim)
    shape = tuple(_U64.unpack_from(dims, 8 * i)[0] for i in range(ndim))
    (nbytes,) = _U64.unpack_from(mv, pos)
    raw, pos = _take(mv, pos + 8, nbytes)
    count = math.prod(shape)  # exact (numpy's int64 product could wrap around)
    if count * dtype.itemsize != nbytes or any(d >= 1 << 62 for d in shape):
        raise ProtocolError("malformed message: array size does not match its shape")
    if dtype.kind == "b" and nbytes and max(raw) > 1:
        raise ProtocolError("malformed message: bool array holds a byte other than 0 or 1")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy(), pos
