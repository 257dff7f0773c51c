"""Slot packing (veil.mpc.slots): the vectorised unpack equals a per-slot shift-and-mask."""

from __future__ import annotations

import numpy as np
import pytest

from veil.errors import ConfigError
from veil.mpc.slots import pack, unpack

rng = np.random.default_rng(3)


def _slot_words(v: int, slot: int, slots: int) -> list[int]:
    """The specification: slot t is bits [slot t, slot (t + 1)), kept mod 2^64."""
    return [((v >> (slot * t)) & ((1 << slot) - 1)) & ((1 << 64) - 1) for t in range(slots)]


LAYOUTS = [(5, 7), (63, 3), (64, 4), (65, 3), (80, 25), (184, 11)]


@pytest.mark.parametrize(("slot", "slots"), LAYOUTS)
def test_unpack_equals_shift_and_mask(slot: int, slots: int) -> None:
    # random values, values with bits above the last slot, all-ones and zero
    vals = [int.from_bytes(rng.bytes(-(-slot * slots // 8) + 3), "little") for _ in range(40)]
    vals += [(1 << (slot * slots)) - 1, (1 << (slot * slots + 70)) - 1, 0, 1, -1, -(3 << 70)]
    got = unpack(vals, slot, slots)
    assert got.dtype == np.uint64
    assert got.shape == (len(vals), slots)
    assert got.tolist() == [_slot_words(v, slot, slots) for v in vals]


def test_pack_then_unpack_round_trips_with_a_partial_last_group() -> None:
    slot, slots = 90, 4
    V = np.empty((6, 10), dtype=object)
    V.ravel()[:] = [int.from_bytes(rng.bytes(11), "little") >> 2 for _ in range(V.size)]
    packed = pack(V, slot, slots)
    assert packed.shape == (6, 3)
    words = unpack(packed.ravel().tolist(), slot, slots).reshape(6, 3 * slots)[:, :10]
    assert words.tolist() == [[x & ((1 << 64) - 1) for x in row] for row in V.tolist()]
    assert packed[0, 2] == V[0, 8] + (V[0, 9] << slot)  # low slot first
    words64 = np.array(V.tolist(), dtype=object) & ((1 << 64) - 1)
    assert (pack(words64.astype(np.uint64), 70, 3) == pack(words64, 70, 3)).all()


def test_empty_inputs_and_a_bad_layout() -> None:
    assert unpack([], 80, 3).shape == (0, 3)
    assert pack(np.zeros((2, 0), dtype=np.uint64), 80, 3).shape == (2, 0)
    assert pack(np.zeros((0, 5), dtype=np.uint64), 80, 3).shape == (0, 2)
    with pytest.raises(ConfigError, match="slot layout"):
        unpack([1], 0, 3)
