"""The one reader of received peer messages: every protocol checks what it receives here.

A peer message is what :func:`veil.codec.decode` returns, usually a dict of named
fields. Before protocol logic touches it, it is checked here, and a missing or extra
field, a value of the wrong type, a number out of range or an oversized array raises
:class:`~veil.errors.ProtocolError` naming the message tag and the field, in one format::

    <tag>.<field>: <problem>          e.g.  enc_score.ct: missing
    <tag>: <problem>                  when the message as a whole is wrong

Two ways to declare a message, both over the same checks:

* a **spec** (:class:`Record` of :class:`Int`, :class:`Str`, :class:`Blob`,
  :class:`Array`, ...), checked by :func:`check` or received and checked by :func:`recv`:
  for messages whose shape is fixed (a PSI hello);
* a typed dataclass with ``from_wire(obj, tag, ...)`` that reads the message through
  :class:`Fields`: for messages whose sizes come from context (a key, a batch size).

This module sits at the bottom (it imports only :mod:`veil.errors`, :mod:`veil.codec`
and numpy) so that every layer, from :mod:`veil.mpc` to :mod:`veil.jobs`, uses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as _dc_field
from typing import Generic, NoReturn, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from veil.codec import IntArray
from veil.errors import ProtocolError

__all__ = [
    "Array",
    "Blob",
    "Fields",
    "Int",
    "Nullable",
    "Receiver",
    "Record",
    "Spec",
    "Str",
    "StrList",
    "check",
    "field",
    "malformed",
    "recv",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

MAX_TEXT = 4096
"""Longest string field by default in :meth:`Fields.get_strs`."""


def malformed(tag: str, name: str, problem: str) -> ProtocolError:
    """The error for field ``name`` (``""``: the whole message) of message ``tag``."""
    return ProtocolError(f"{tag}.{name}: {problem}" if name else f"{tag}: {problem}")


def _type_name(v: object) -> str:
    return type(v).__name__


# --- specs: declarative schemas -------------------------------------------------------


class _Bad(Exception):
    """A value breaks its spec; ``path`` is the field inside the message."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(problem)
        self.path, self.problem = path, problem


class Spec(Protocol[T_co]):
    """A check of one value: returns it (typed, possibly normalised) or raises."""

    def check(self, value: object, path: str) -> T_co: ...


@dataclass(frozen=True)
class Int:
    """An int (not bool) in ``lo..hi`` (``hi`` None: unbounded)."""

    lo: int = 0
    hi: int | None = None

    def check(self, value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(path, f"expected an int, got {_type_name(value)}")
        if value < self.lo or (self.hi is not None and value > self.hi):
            raise _Bad(path, f"{value} is outside {self.lo}..{self.hi}")
        return value


@dataclass(frozen=True)
class Str:
    """A str, of at most ``max_len`` characters, one of ``choices`` if given."""

    choices: frozenset[str] | None = None
    max_len: int = 256

    def check(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise _Bad(path, f"expected a str, got {_type_name(value)}")
        if len(value) > self.max_len:
            raise _Bad(path, f"string of {len(value)} characters, at most {self.max_len}")
        if self.choices is not None and value not in self.choices:
            raise _Bad(path, f"{value!r} is not one of {sorted(self.choices)}")
        return value


@dataclass(frozen=True)
class StrList:
    """A list of at most ``max_items`` strings."""

    max_items: int = 64

    def check(self, value: object, path: str) -> list[str]:
        if not isinstance(value, list | tuple):
            raise _Bad(path, f"expected a list, got {_type_name(value)}")
        if len(value) > self.max_items:
            raise _Bad(path, f"list of {len(value)} items, at most {self.max_items}")
        return [Str().check(v, f"{path}[{i}]") for i, v in enumerate(value)]


@dataclass(frozen=True)
class Blob:
    """bytes of exactly ``size`` bytes, or of at most ``max_size`` and a multiple of
    ``multiple``."""

    size: int | None = None
    max_size: int | None = None
    multiple: int = 1

    def check(self, value: object, path: str) -> bytes:
        if not isinstance(value, bytes):
            raise _Bad(path, f"expected bytes, got {_type_name(value)}")
        n = len(value)
        if self.size is not None and n != self.size:
            raise _Bad(path, f"{n} bytes, expected {self.size}")
        if self.max_size is not None and n > self.max_size:
            raise _Bad(path, f"{n} bytes, at most {self.max_size}")
        if n % self.multiple:
            raise _Bad(path, f"{n} bytes is not a multiple of {self.multiple}")
        return value


@dataclass(frozen=True)
class Array:
    """A numpy array of ``dtype`` with ``shape`` (None entries: any length up to
    ``max_len``), values in ``lo..hi`` for integer arrays when given."""

    dtype: str
    shape: tuple[int | None, ...] = (None,)
    max_len: int = 1 << 32
    lo: int | None = None
    hi: int | None = None

    def check(self, value: object, path: str) -> npt.NDArray[np.generic]:
        if not isinstance(value, np.ndarray):
            raise _Bad(path, f"expected an array, got {_type_name(value)}")
        if value.dtype != np.dtype(self.dtype):
            raise _Bad(path, f"dtype {value.dtype}, expected {np.dtype(self.dtype)}")
        if value.ndim != len(self.shape):
            raise _Bad(path, f"{value.ndim} dimensions, expected {len(self.shape)}")
        for i, (got, want) in enumerate(zip(value.shape, self.shape, strict=True)):
            if want is not None and got != want:
                raise _Bad(path, f"axis {i} has length {got}, expected {want}")
            if want is None and got > self.max_len:
                raise _Bad(path, f"axis {i} has length {got}, at most {self.max_len}")
        if value.size and self.lo is not None and int(value.min()) < self.lo:
            raise _Bad(path, f"holds {int(value.min())}, below {self.lo}")
        if value.size and self.hi is not None and int(value.max()) > self.hi:
            raise _Bad(path, f"holds {int(value.max())}, above {self.hi}")
        return value


@dataclass(frozen=True)
class Nullable(Generic[T]):
    """None or a value of ``inner``."""

    inner: Spec[T]

    def check(self, value: object, path: str) -> T | None:
        return None if value is None else self.inner.check(value, path)


@dataclass(frozen=True)
class Record:
    """A dict with exactly the keys of ``fields``, each checked by its spec."""

    fields: Mapping[str, Spec[object]] = _dc_field(default_factory=dict)

    def check(self, value: object, path: str) -> dict[str, object]:
        if not isinstance(value, dict):
            raise _Bad(path, f"expected a mapping, got {_type_name(value)}")
        for k in self.fields:
            if k not in value:
                raise _Bad(_join(path, k), "missing")
        extra = sorted(str(k) for k in value if k not in self.fields)
        if extra:
            raise _Bad(_join(path, extra[0]), "unexpected field")
        return {k: spec.check(value[k], _join(path, k)) for k, spec in self.fields.items()}


def _join(path: str, key: str) -> str:
    return key if not path else f"{path}.{key}"


def check(value: object, spec: Spec[T], tag: str, peer: str | None = None) -> T:
    """``value`` checked by ``spec``; a :class:`ProtocolError` naming tag, field (and
    peer, if given) otherwise."""
    try:
        return spec.check(value, "")
    except _Bad as e:
        problem = e.problem if peer is None else f"{e.problem} (from {peer})"
        raise malformed(str(tag), e.path, problem) from None


class Receiver(Protocol):
    """What :func:`recv` needs from a session (a :class:`veil.net.session.Session`)."""

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> object: ...


def recv(session: Receiver, peer: str, tag: str, spec: Spec[T], timeout: float | None = None) -> T:
    """Receive the next ``tag`` message from ``peer`` (waiting up to ``timeout`` seconds,
    default the session's) and check it against ``spec``."""
    return check(session.recv(peer, tag, timeout), spec, str(tag), peer)


# --- Fields: reading a message field by field --------------------------------------

_MISSING = object()


class Fields:
    """One received message (or a nested part of it), read field by field.

    ``tag`` names the message in errors; ``path`` is the prefix of nested parts.
    """

    def __init__(self, tag: str, msg: object, path: str = "") -> None:
        self.tag, self.path = str(tag), path
        if not isinstance(msg, dict):
            raise malformed(
                self.tag, path.rstrip("."), f"expected a mapping, got {_type_name(msg)}"
            )
        self.msg: dict[object, object] = msg

    def error(self, name: str, problem: str) -> ProtocolError:
        """The error for field ``name``: names the tag and the field."""
        return malformed(self.tag, f"{self.path}{name}", problem)

    def fail(self, name: str, problem: str) -> NoReturn:
        """Raise :meth:`error`."""
        raise self.error(name, problem)

    def wrap(self, name: str, err: Exception) -> ProtocolError:
        """A consumer's error about field ``name`` (e.g. a malformed key), with tag and field."""
        return self.error(name, f"is malformed: {err}")

    def raw(self, name: str) -> object:
        """The value as sent (checked by its consumer, e.g. a public key)."""
        v = self.msg.get(name, _MISSING)
        if v is _MISSING:
            raise self.error(name, "missing")
        return v

    def get(self, name: str, typ: type[T]) -> T:
        """A field that is an instance of ``typ`` (a bool is no int here)."""
        v = self.raw(name)
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise self.error(name, f"expected {typ.__name__}, got {_type_name(v)}")
        return v

    def is_set(self, name: str) -> bool:
        """Whether the nullable field ``name`` is not None (missing is an error)."""
        return self.raw(name) is not None

    def get_dict(self, name: str) -> dict[str, object]:
        """A dict-valued field with str keys, as sent (checked by its consumer)."""
        v = self.raw(name)
        if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
            raise self.error(name, f"is a {_type_name(v)}, expected a dict")
        return v

    def get_map(self, name: str, typ: type[T]) -> dict[str, T]:
        """A dict of str keys whose values are all ``typ``."""
        out: dict[str, T] = {}
        for k, v in self.get_dict(name).items():
            if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
                raise self.error(f"{name}[{k}]", f"expected {typ.__name__}")
            out[k] = v
        return out

    def nested(self, name: str) -> Fields:
        """A dict-valued field, read with the same tag."""
        return Fields(self.tag, self.raw(name), f"{self.path}{name}.")

    def item(self, name: str, i: int, value: object) -> Fields:
        """Element ``i`` of the list field ``name``, a dict."""
        return Fields(self.tag, value, f"{self.path}{name}[{i}].")

    def element(self, name: str, i: int, value: object) -> Fields:
        """Element ``i`` of the list field ``name``, any value: read it as field ``""``
        (``f.element("rows", 2, v).int_array("")``)."""
        return Fields(self.tag, {"": value}, f"{self.path}{name}[{i}]")

    def get_int(self, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
        """An integer (not a bool) in ``[lo, hi]`` (bounds optional)."""
        v = self.raw(name)
        if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer):
            raise self.error(name, f"is a {_type_name(v)}, expected an int")
        v = int(v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.error(name, f"is {v}, expected {lo if lo is not None else '..'}..{hi}")
        return v

    def get_float(self, name: str) -> float:
        """A finite number."""
        v = self.raw(name)
        if isinstance(v, bool | np.bool_) or not isinstance(v, float | int | np.number):
            raise self.error(name, f"is a {_type_name(v)}, expected a number")
        if not math.isfinite(float(v)):
            raise self.error(name, "is not finite")
        return float(v)

    def get_bool(self, name: str) -> bool:
        v = self.raw(name)
        if not isinstance(v, bool | np.bool_):
            raise self.error(name, f"is a {_type_name(v)}, expected a bool")
        return bool(v)

    def get_str(self, name: str, *, max_len: int | None = None) -> str:
        """A str of at most ``max_len`` characters (if given)."""
        v = self.raw(name)
        if not isinstance(v, str):
            raise self.error(name, f"is a {_type_name(v)}, expected a str")
        if max_len is not None and len(v) > max_len:
            raise self.error(name, f"{len(v)} characters, at most {max_len}")
        return v

    def get_strs(self, name: str, *, max_items: int, max_len: int = MAX_TEXT) -> tuple[str, ...]:
        """A list of at most ``max_items`` strings of at most ``max_len`` characters."""
        v = self.raw(name)
        if not isinstance(v, list) or len(v) > max_items:
            raise self.error(name, f"expected a list of at most {max_items} strings")
        if not all(isinstance(x, str) and len(x) <= max_len for x in v):
            raise self.error(name, "holds a non-string")
        return tuple(v)

    def get_bytes(self, name: str, size: int) -> bytes:
        """Exactly ``size`` bytes."""
        v = self.raw(name)
        if not isinstance(v, bytes) or len(v) != size:
            got = f"{len(v)}" if isinstance(v, bytes) else _type_name(v)
            raise self.error(name, f"expected {size} bytes, got {got}")
        return v

    def get_list(
        self, name: str, *, size: int | None = None, max_size: int | None = None
    ) -> list[object]:
        """A list of exactly ``size`` or at most ``max_size`` elements."""
        v = self.raw(name)
        if not isinstance(v, list | tuple):
            raise self.error(name, f"is a {_type_name(v)}, expected a list")
        self._check_size(name, len(v), size, max_size)
        return list(v)

    def _check_size(self, name: str, n: int, size: int | None, max_size: int | None) -> None:
        if size is not None and n != size:
            raise self.error(name, f"has {n} entries, expected {size}")
        if max_size is not None and n > max_size:
            raise self.error(name, f"has {n} entries, at most {max_size} allowed")

    def integers(self, name: str, n: int, max_bits: int) -> list[int]:
        """A list of exactly ``n`` Python integers, each below ``2**max_bits`` in size."""
        v = self.raw(name)
        if not isinstance(v, list):
            raise self.error(name, f"expected a list of {n} integers, got {_type_name(v)}")
        if len(v) != n:
            raise self.error(name, f"{len(v)} values, expected {n}")
        ints: list[int] = []
        for x in v:
            if isinstance(x, bool) or not isinstance(x, int):
                raise self.error(name, "holds a non-integer")
            if x.bit_length() > max_bits:
                raise self.error(name, f"holds an integer wider than {max_bits} bits")
            ints.append(x)
        return ints

    def array(self, name: str, n: int, dtype: npt.DTypeLike) -> npt.NDArray[np.generic]:
        """A numpy vector of exactly ``n`` values of ``dtype``."""
        v = self.raw(name)
        want = np.dtype(dtype)
        if not isinstance(v, np.ndarray) or v.dtype != want or v.shape != (n,):
            got = f"{v.dtype}{v.shape}" if isinstance(v, np.ndarray) else _type_name(v)
            raise self.error(name, f"expected a {want} vector of {n}, got {got}")
        return v

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
        v = self.raw(name)
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "iu" or v.ndim != 1:
                raise self.error(name, f"is a {v.ndim}-D {v.dtype} array, expected 1-D integers")
        elif not isinstance(v, list | tuple) or any(
            isinstance(e, bool) or not isinstance(e, int) for e in v
        ):
            raise self.error(name, f"is a {_type_name(v)}, expected a list of ints")
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
        v = self.raw(name)
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "iuf" or v.ndim != 1:
                raise self.error(name, f"is a {v.ndim}-D {v.dtype} array, expected 1-D numbers")
        elif not isinstance(v, list | tuple) or any(
            isinstance(e, bool) or not isinstance(e, int | float) for e in v
        ):
            raise self.error(name, f"is a {_type_name(v)}, expected a list of numbers")
        self._check_size(name, len(v), size, max_size)
        arr = np.asarray(v, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise self.error(name, "holds a value that is not finite")
        return arr

    def bits(self, name: str, n: int) -> npt.NDArray[np.bool_]:
        """``n`` booleans sent packed (``numpy.packbits``: a uint8 array of ``ceil(n/8)``)."""
        v = self.raw(name)
        if not isinstance(v, np.ndarray) or v.dtype != np.uint8 or v.ndim != 1:
            raise self.error(name, f"is a {_type_name(v)}, expected packed bits (uint8)")
        self._check_size(name, v.size, (n + 7) // 8, None)
        return np.unpackbits(v, count=n).astype(bool)

    def ciphertexts(
        self, name: str, *, size: int | None = None, max_size: int | None = None
    ) -> IntArray:
        """Ciphertexts sent as an :class:`~veil.codec.IntArray` (range checked by the key)."""
        v = self.raw(name)
        if not isinstance(v, IntArray):
            raise self.error(name, f"is a {_type_name(v)}, expected ciphertexts (IntArray)")
        self._check_size(name, len(v), size, max_size)
        return v


def field(value: object, tag: str, name: str, typ: type[T]) -> T:
    """``value[name]`` checked to be a ``typ``: ``Fields(tag, value).get(name, typ)``."""
    return Fields(tag, value).get(name, typ)
