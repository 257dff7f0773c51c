"""Slot packing of non-negative integers into one big plaintext, shared by the HE steps
(:mod:`veil.mpc.he_triples`, :mod:`veil.mpc.he_cross`).

Slot ``t`` of a packed integer holds bits ``[slot * t, slot * (t + 1))``; every value
packed must lie in ``[0, 2^slot)`` so that slots never carry into each other. Unpacking
keeps each slot's value mod 2^64 (a ring word): each integer is turned into bytes once
and the slots are cut out with numpy, not shifted out one by one in Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from veil.errors import ConfigError
from veil.mpc.ring import Share

__all__ = ["pack", "unpack"]


def pack(V: np.ndarray, slot: int, slots: int) -> np.ndarray:
    """The rows of a 2-D array of ints in ``[0, 2^slot)`` (any integer or object dtype),
    ``slots`` columns to an integer, low slot first: an object array (rows, groups),
    ``groups = ceil(width / slots)``, the last group possibly partial."""
    n, width = V.shape
    groups = -(-width // slots)
    out = np.zeros((n, groups), dtype=object)
    for g in range(groups):
        for t in range(min(slots, width - g * slots)):  # numpy loops over the rows
            out[:, g] += V[:, g * slots + t].astype(object) << (slot * t)
    return out


def unpack(vals: Sequence[int], slot: int, slots: int) -> Share:
    """Every slot of every value mod 2^64: (len(vals), slots) uint64 words, as
    ``(v >> (slot * t)) & (2^slot - 1)`` would give them (two's complement for a negative
    ``v``). Bits above the last slot are ignored."""
    if slot < 1 or slots < 1:
        raise ConfigError("slots", f"bad slot layout: {slots} slots of {slot} bits")
    keep = (1 << (slot * slots)) - 1  # a negative value's bits: its two's complement
    ints = [v & keep if v < 0 else v for v in map(int, vals)]
    n = len(ints)
    if n == 0:
        return np.zeros((0, slots), dtype=np.uint64)
    # whole bytes of the longest value, and room to read 9 bytes from a slot's first byte
    longest = max(v.bit_length() for v in ints)
    width = -(-max(slot * slots, longest) // 8) + 9
    buf = np.frombuffer(b"".join(v.to_bytes(width, "little") for v in ints), dtype=np.uint8)
    out = np.empty((n, slots), dtype=np.uint64)
    for t in range(slots):
        first, shift = divmod(slot * t, 8)
        lo = np.ndarray((n,), dtype="<u8", buffer=buf, offset=first, strides=(width,))
        hi = buf[first + 8 :: width].astype(np.uint64)
        # the 64 bits from bit ``shift`` of the 9 bytes: (hi << 1) << (63 - shift) is
        # hi << (64 - shift), and 0 where shift is 0
        out[:, t] = (lo >> np.uint64(shift)) | ((hi << np.uint64(1)) << np.uint64(63 - shift))
    if slot < 64:
        out &= np.uint64((1 << slot) - 1)
    return out
