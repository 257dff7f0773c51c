"""What the interactive MPC code needs from a session, and checks on what peers send.

:mod:`veil.mpc` sits below :mod:`veil.net` and never imports it: the protocols here
talk through any object with ``send(to, tag, value)`` and ``recv(frm, tag)`` that
encodes values with :mod:`veil.codec` (a :class:`veil.net.session.Session` is one).
Every check below turns a malformed peer message into a
:class:`~veil.errors.ProtocolError` that names the message tag and the field.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from veil.messages import Fields, malformed
from veil.mpc.ring import Share

__all__ = ["Channel", "expect_bytes", "expect_field", "expect_int", "expect_words"]


class Channel(Protocol):
    """The messaging half of :class:`veil.net.session.Session`."""

    def send(self, to: str, tag: str, value: object) -> None: ...

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> object: ...


def expect_field(msg: object, tag: str, field: str) -> object:
    """``msg[field]`` of a dict message, or a ProtocolError naming tag and field."""
    return Fields(tag, msg).raw(field)


def expect_words(
    value: object, tag: str, field: str, shape: tuple[int, ...] | None = None
) -> Share:
    """A ``uint64`` array of ``shape`` (any shape if None)."""
    if not isinstance(value, np.ndarray) or value.dtype != np.uint64:
        got = getattr(value, "dtype", type(value).__name__)
        raise malformed(tag, field, f"expected uint64 words, got {got}")
    if shape is not None and value.shape != tuple(shape):
        raise malformed(tag, field, f"shape {value.shape}, expected {tuple(shape)}")
    return value


def expect_bytes(value: object, tag: str, field: str, size: int) -> bytes:
    """Exactly ``size`` bytes."""
    return Fields(tag, {field: value}).get_bytes(field, size)


def expect_int(value: object, tag: str, field: str, lo: int = 0, hi: int | None = None) -> int:
    """An integer in ``[lo, hi]``."""
    return Fields(tag, {field: value}).get_int(field, lo=lo, hi=hi)
