"""Typed schemas for PSI peer messages, checked on receipt.

Every message a PSI protocol receives goes through :func:`recv` with a schema: a
:class:`Record` (a dict with exactly these fields) or a single value spec (:class:`Blob`,
:class:`Array`, ...). A missing or extra field, a wrong type, a value out of range or an
oversized array raises :class:`veil.errors.ProtocolError` naming the peer, the tag and
the field, so that no malformed frame reaches the protocol logic as a KeyError or
TypeError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from veil.errors import ProtocolError
from veil.net.session import Session

__all__ = ["Array", "Blob", "Int", "Nullable", "Record", "Str", "StrList", "check", "recv"]


class _Bad(Exception):
    """A value breaks its spec; ``field`` is the path inside the message."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field, self.problem = field, problem


class Spec(Protocol):
    """A check of one value; returns it (possibly normalised) or raises :class:`_Bad`."""

    def check(self, value: Any, path: str) -> Any: ...


def _type_name(v: Any) -> str:
    return type(v).__name__


@dataclass(frozen=True)
class Int:
    """An int (not bool) in ``lo..hi`` (``hi`` None: unbounded)."""

    lo: int = 0
    hi: int | None = None

    def check(self, value: Any, path: str) -> int:
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

    def check(self, value: Any, path: str) -> str:
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

    def check(self, value: Any, path: str) -> list[str]:
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

    def check(self, value: Any, path: str) -> bytes:
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

    def check(self, value: Any, path: str) -> np.ndarray:
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
class Nullable:
    """None or a value of ``inner``."""

    inner: Spec

    def check(self, value: Any, path: str) -> Any:
        return None if value is None else self.inner.check(value, path)


@dataclass(frozen=True)
class Record:
    """A dict with exactly the keys of ``fields``, each checked by its spec."""

    fields: Mapping[str, Spec] = field(default_factory=dict)

    def check(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _Bad(path, f"expected a dict, got {_type_name(value)}")
        for k in self.fields:
            if k not in value:
                raise _Bad(_join(path, k), "missing")
        extra = sorted(str(k) for k in value if k not in self.fields)
        if extra:
            raise _Bad(_join(path, extra[0]), "unexpected field")
        return {k: spec.check(value[k], _join(path, k)) for k, spec in self.fields.items()}


def _join(path: str, key: str) -> str:
    return key if not path else f"{path}.{key}"


def check(value: Any, spec: Spec, tag: str, peer: str) -> Any:
    """``value`` checked by ``spec``; a :class:`ProtocolError` naming peer, tag and field."""
    try:
        return spec.check(value, "")
    except _Bad as e:
        where = f"field '{e.field}'" if e.field else "body"
        raise ProtocolError(
            f"peer {peer} sent a malformed '{tag}' message: {where}: {e.problem}"
        ) from None


def recv(session: Session, peer: str, tag: str, spec: Spec, timeout: float | None = None) -> Any:
    """Receive the next ``tag`` message from ``peer`` (waiting up to ``timeout`` seconds,
    default the session's) and check it against ``spec``."""
    return check(session.recv(peer, tag, timeout), spec, str(tag), peer)
