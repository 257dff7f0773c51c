"""Cuckoo hashing for KKRT-PSI: bin counts from the failure bound, placement."""

from __future__ import annotations

import numpy as np
import pytest

from veil.protocols.psi import cuckoo


@pytest.mark.parametrize("n", [2, 10, 100, 1000, 20_000])
def test_bin_count_meets_the_bound(n: int) -> None:
    b = cuckoo.bin_count(n)
    assert b >= 1.27 * n
    assert cuckoo.log2_failure_bound(n, b) <= -40
    assert cuckoo.log2_failure_bound(n, int(b * 0.97)) > -40  # and is close to the least


def test_large_sets_need_about_1_56_n_bins() -> None:
    assert 1.5 < cuckoo.bin_count(100_000) / 100_000 < 1.6


@pytest.mark.parametrize(("n", "bins"), [(0, 1), (1, 2), (1000, 3537), (5000, 5600)])
def test_every_item_placed_once_in_one_of_its_bins(n: int, bins: int) -> None:
    bin_of = np.random.default_rng(n).integers(0, bins, (n, cuckoo.HASHES))
    placed = cuckoo.cuckoo_insert(bin_of, bins)
    assert placed is not None
    table, which = placed
    occ = np.flatnonzero(table >= 0)
    assert sorted(table[occ].tolist()) == list(range(n))
    np.testing.assert_array_equal(bin_of[table[occ], which[occ]], occ)


def test_impossible_placement_is_reported_not_dropped() -> None:
    bin_of = np.array([[0, 1, 0], [1, 0, 1], [0, 0, 1]])  # 3 items, 2 bins
    assert cuckoo.cuckoo_insert(bin_of, 4) is None


def test_hash_items_depends_on_the_seed() -> None:
    tags1, bins1 = cuckoo.hash_items([b"a", b"b"], bytes(16), 1000)
    tags2, _ = cuckoo.hash_items([b"a", b"b"], b"\x01" * 16, 1000)
    assert tags1.shape == (2, 15) and bins1.shape == (2, 3)
    assert (tags1 != tags2).any() and (bins1 < 1000).all()
