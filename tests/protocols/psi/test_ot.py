"""Base OT, bit transposition and the KKRT OT extension's correlation, directly."""

from __future__ import annotations

import numpy as np
import pytest

from veil.errors import ProtocolError
from veil.protocols.psi import ot


def _base_ots() -> tuple[np.ndarray, list[tuple[bytes, bytes]], list[bytes]]:
    s = ot.random_choices()
    sender = ot.BaseOtSender()
    reply, chosen = ot.BaseOtReceiver(np.unpackbits(s)).reply(sender.message)
    return s, sender.keys(reply, ot.WIDTH), chosen


def test_base_ot_gives_the_chosen_key_only() -> None:
    s, pairs, chosen = _base_ots()
    bits = np.unpackbits(s)
    assert all(chosen[j] == pairs[j][bits[j]] for j in range(ot.WIDTH))
    assert all(chosen[j] != pairs[j][1 - bits[j]] for j in range(ot.WIDTH))
    assert len({k for pair in pairs for k in pair}) == 2 * ot.WIDTH


def test_base_ot_rejects_bad_points() -> None:
    with pytest.raises(ProtocolError, match="not a valid"):
        ot.BaseOtReceiver(np.zeros(4, dtype=np.uint8)).reply(bytes(32))
    with pytest.raises(ProtocolError, match="not a valid"):
        ot.BaseOtSender().keys(bytes(32 * 2), 2)


@pytest.mark.parametrize(("r", "c"), [(8, 1), (512, 16), (128, 64), (4096, 64), (24, 3)])
def test_transpose_bits_matches_unpackbits(r: int, c: int) -> None:
    m = np.random.default_rng(r * c).integers(0, 256, (r, c), dtype=np.uint8)
    want = np.packbits(np.unpackbits(m, axis=1).T, axis=1)
    got = ot.transpose_bits(m)
    assert got.shape == (8 * c, r // 8)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ot.transpose_bits(got), m)


def test_ot_extension_correlation() -> None:
    """Receiver's t_j == sender's q_j ^ (C(r_j) & s) for every row, over several chunks."""
    s, pairs, chosen = _base_ots()
    receiver, sender = ot.OprfReceiver(pairs), ot.OprfSender(chosen, s)
    rng = np.random.default_rng(7)
    for rows in (256, 128, 1024):
        tags = rng.integers(0, 256, (rows, ot.TAG_BYTES), dtype=np.uint8)
        d = ot.code_words(bytes(16), tags, rng.integers(0, 3, rows).astype(np.uint8))
        u, t = receiver.chunk(d)
        q = sender.chunk(u)
        np.testing.assert_array_equal(t, q ^ (d & s))
        np.testing.assert_array_equal(sender.masked(q, d), t)
        other = np.roll(d, 1, axis=0)
        assert not (sender.masked(q, other) == t).all(axis=1).any()  # a wrong input differs


def test_code_words_differ_by_tag_and_hash_index() -> None:
    tags = np.zeros((3, ot.TAG_BYTES), dtype=np.uint8)
    tags[2, 0] = 1
    c = ot.code_words(b"k" * 16, tags, np.array([0, 1, 0], dtype=np.uint8))
    assert len({row.tobytes() for row in c}) == 3
    dist = np.unpackbits(c[0] ^ c[1]).sum()
    assert 128 < dist < 384  # pseudorandom: about half the 512 bits differ
