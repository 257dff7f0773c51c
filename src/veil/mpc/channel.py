"""What the interactive MPC code needs from a session, and checks on what peers send.

:mod:`veil.mpc` sits below :mod:`veil.net` and never imports it: the protocols here
talk through any object with ``send(to, tag, value)`` and ``recv(frm, tag)`` that
encodes values with :mod:`veil.codec` (a :class:`veil.net.session.Session` is one).
Every check below turns a malformed peer message into a
:class:`~veil.errors.ProtocolError` that names the message tag and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from veil.errors import ProtocolError
from veil.mpc.ring import Share

__all__ = ["Channel", "expect_bytes", "expect_field", "expect_int", "expect_words"]


class Channel(Protocol):
    """The messaging half of :class:`veil.net.session.Session`."""

    def send(self, to: str, tag: str, value: Any) -> None: ...

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> Any: ...


def expect_field(msg: Any, tag: str, field: str) -> Any:
    """``msg[field]`` of a dict message, or a ProtocolError naming tag and field."""
    if not isinstance(msg, Mapping):
        raise ProtocolError(f"{tag}: expected a mapping, got {type(msg).__name__}")
    if field not in msg:
        raise ProtocolError(f"{tag}.{field}: missing")
    return msg[field]


def expect_words(value: Any, tag: str, field: str, shape: tuple[int, ...] | None = None) -> Share:
    """A ``uint64`` array of ``shape`` (any shape if None)."""
    if not isinstance(value, np.ndarray) or value.dtype != np.uint64:
        got = getattr(value, "dtype", type(value).__name__)
        raise ProtocolError(f"{tag}.{field}: expected uint64 words, got {got}")
    if shape is not None and value.shape != tuple(shape):
        raise ProtocolError(f"{tag}.{field}: shape {value.shape}, expected {tuple(shape)}")
    return value


def expect_bytes(value: Any, tag: str, field: str, size: int) -> bytes:
    """Exactly ``size`` bytes."""
    if not isinstance(value, bytes) or len(value) != size:
        got = len(value) if isinstance(value, bytes) else type(value).__name__
        raise ProtocolError(f"{tag}.{field}: expected {size} bytes, got {got}")
    return value


def expect_int(value: Any, tag: str, field: str, lo: int = 0, hi: int | None = None) -> int:
    """An integer in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{tag}.{field}: expected an integer, got {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        raise ProtocolError(f"{tag}.{field}: {value} is outside [{lo}, {hi}]")
    return value
