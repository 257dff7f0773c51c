"""Seeded AES-CTR streams: reproducible per seed and label, independent across them."""

from __future__ import annotations

import numpy as np
import pytest

from veil.errors import ConfigError
from veil.mpc.prg import PRG, SEED_BYTES, new_seed


def test_streams_are_reproducible_and_distinct() -> None:
    s = new_seed()
    assert len(s) == SEED_BYTES and s != new_seed()
    a = PRG(s).words("x", (3, 4))
    assert a.dtype == np.uint64 and a.shape == (3, 4)
    assert np.array_equal(a, PRG(s).words("x", (3, 4)))
    assert np.array_equal(PRG(s).words("x", 20)[:12], a.ravel())  # a prefix of the stream
    assert not np.array_equal(a, PRG(s).words("y", (3, 4)))
    assert not np.array_equal(a, PRG(new_seed()).words("x", (3, 4)))


def test_words_are_uniform_bits() -> None:
    w = PRG(bytes(16)).words("bits", 20000)
    bits = np.unpackbits(w.view(np.uint8)).reshape(-1, 64).mean(axis=0)
    assert np.all(np.abs(bits - 0.5) < 0.02)  # 20000 draws: sd 0.0035, bound ~5.7 sd


def test_below_reads_big_integers_off_the_stream() -> None:
    g, bits = PRG(bytes(16)), 70
    got = g.below("big", 4000, bits)
    w = g.words("big", (4000, 2))  # two little-endian words each, bits above 70 dropped
    assert got == [(int(lo) | int(hi) << 64) & ((1 << bits) - 1) for lo, hi in w]
    assert all(0 <= v < 1 << bits for v in got) and max(got) >= 1 << (bits - 1)
    assert len(set(got)) == len(got) and g.below("big", 0, bits) == []


def test_bad_seed_is_refused_and_never_printed() -> None:
    with pytest.raises(ConfigError, match="seed"):
        PRG(b"short")
    assert "hidden" in repr(PRG(b"k" * 16)) and "kkk" not in repr(PRG(b"k" * 16))
