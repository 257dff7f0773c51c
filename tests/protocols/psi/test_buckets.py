"""RR22's buckets: grouping by shard with de-duplication against a plain reference, the
padding bound against the exact binomial tail, the bucket count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from veil.errors import ConfigError
from veil.protocols.psi import buckets


def _tail(n: int, p: float, k: int) -> float:
    """P[Binomial(n, p) > k], summed directly (log-space terms, until they vanish)."""
    total, j = 0.0, k + 1
    while j <= n:
        log_term = (
            math.lgamma(n + 1)
            - math.lgamma(j + 1)
            - math.lgamma(n - j + 1)
            + j * math.log(p)
            + (n - j) * math.log1p(-p)
        )
        term = math.exp(log_term)
        total += term
        if term < total * 1e-18:
            break
        j += 1
    return total


@pytest.mark.parametrize(("n", "b"), [(10_000_000, 32), (1_000_000, 4), (1000, 8), (50, 16)])
def test_bound_against_the_exact_binomial_tail(n: int, b: int) -> None:
    k = buckets.bound(n, b, 40)
    assert b * _tail(n, 1 / b, k) <= 2.0**-40  # the guarantee
    mu = n / b
    lo, hi = math.floor(mu), k  # the least j with b * tail(j) <= 2^-40, by bisection
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if b * _tail(n, 1 / b, mid) <= 2.0**-40 else (mid + 1, hi)
    exact = lo
    assert exact <= k <= exact + 0.25 * (exact - mu) + 10  # Bernstein: not much looser
    assert b * _tail(n, 1 / b, exact - 1) > 2.0**-40  # the search found the least such k


def test_bound_edges_and_bad_input() -> None:
    assert buckets.bound(12345, 1, 40) == 12345  # one bucket: the exact count, no padding
    assert buckets.bound(3, 16, 40) == 3  # never above n
    assert buckets.bound(0, 8, 40) == 0
    for bad in ((10, 3, 40), (10, 2048, 40), (-1, 2, 40), (10, 2, 0)):
        with pytest.raises(ConfigError):
            buckets.bound(*bad)


def test_bucket_count() -> None:
    target = 1 << 19
    assert buckets.bucket_count(target, 10, 40, target) == 1
    assert buckets.bucket_count(10, target + 1, 40, target) == 2  # from the larger set
    b = buckets.bucket_count(10**7, 10**6, 40, target)
    assert b == 32 and buckets.bound(10**7, b, 40) <= target < buckets.bound(10**7, b // 2, 40)
    assert buckets.bucket_count(10**12, 1, 40, target) == buckets.SHARDS  # capped


def _reference(d: np.ndarray) -> tuple[list[int], list[int]]:
    """(input positions of first occurrences, shard by shard; shard of each)."""
    seen: set[tuple[int, int]] = set()
    firsts = []
    for i, row in enumerate(map(tuple, d.tolist())):
        if row not in seen:
            seen.add(row)
            firsts.append(i)
    sh = buckets.shards(d)
    order = sorted(firsts, key=lambda i: (int(sh[i]), i))
    return order, [int(sh[i]) for i in order]


@pytest.mark.parametrize("rows", [None, 7])
def test_group_keeps_first_occurrences_by_shard(
    monkeypatch: pytest.MonkeyPatch, rows: int | None
) -> None:
    if rows is not None:  # many groups of whole shards, many blocks of the counting sort
        monkeypatch.setattr(buckets, "DEDUPE_ROWS", rows)
        monkeypatch.setattr(buckets, "SORT_ROWS", rows * 13)
    rng = np.random.default_rng(5)
    distinct = rng.integers(0, 2**64, size=(3000, 2), dtype=np.uint64)
    distinct[10, 0] = distinct[11, 0]  # same first word, different second: both kept
    d = distinct[rng.integers(0, 3000, size=5000)]  # repeats, most ids several times
    g = buckets.group(d)
    order, shard_of = _reference(d)
    assert g.order.tolist() == order
    assert g.order.dtype == np.int32 and len(g) == len(order)
    counts = np.bincount(shard_of, minlength=buckets.SHARDS)
    assert np.array_equal(np.diff(g.offsets), counts)
    starts = g.bucket_offsets(8)  # bucket = shard >> (SHARD_BITS - 3)
    assert len(starts) == 9 and starts[0] == 0 and starts[-1] == len(order)
    for b in range(8):
        sh = buckets.shards(d[g.order[starts[b] : starts[b + 1]]])
        assert ((sh >> (buckets.SHARD_BITS - 3)) == b).all()


def test_group_without_duplicates_and_empty() -> None:
    d = np.random.default_rng(6).integers(0, 2**64, size=(1000, 2), dtype=np.uint64)
    g = buckets.group(d)
    assert sorted(g.order.tolist()) == list(range(1000))
    assert g.offsets[-1] == 1000
    empty = buckets.group(np.zeros((0, 2), dtype=np.uint64))
    assert len(empty) == 0 and empty.bucket_offsets(4).tolist() == [0, 0, 0, 0, 0]
