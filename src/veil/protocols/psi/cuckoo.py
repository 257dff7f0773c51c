"""Cuckoo hashing (receiver) and simple hashing (sender) for KKRT-PSI.

Each item x gets, under a fresh public 16-byte seed, a 15-byte tag and three bin
indices: BLAKE2b-320 keyed by the seed; bytes 0..14 are the tag, bytes 16..39 three
little-endian 64-bit words reduced mod the number of bins B (bias < B/2^64).

The receiver puts each item in one of its three bins, at most one item per bin
(cuckoo hashing with h = 3 [Pagh-Rodler 2004; PSZ, USENIX Security 2014/2015]); the
sender puts every item in all three of its bins (simple hashing), so a common item
meets the receiver's copy in the bin the receiver chose.

Failure bound. Items cannot all be placed iff some k+1 items have all their 3(k+1)
bin indices inside k bins (Hall's condition), so, for random hash functions,
    P[fail] <= sum_{k=1}^{n-1} C(n, k+1) C(B, k) (k/B)^(3(k+1)).
:func:`bin_count` picks the least B >= 1.27 n with this bound <= 2^-40 (B/n = 1.56 for
n = 1e5..1e6, more for small n: 1405 bins for 100 items). Insertion searches for an
augmenting path (breadth first), so it places every item whenever Hall's condition
holds: a failure is exactly the bounded event, and the caller re-seeds.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque

import numpy as np

HASHES = 3
STATISTICAL_BITS = 40
MIN_LOAD_FACTOR = 1.27
_DIGEST = 40
_PERSON = b"veil-kkrt-items"
_PARALLEL_ROUNDS = 64


def log2_failure_bound(n: int, bins: int, _lf: np.ndarray | None = None) -> float:
    """log2 of the union bound above for ``n`` items in ``bins`` bins."""
    if n < 2:
        return -math.inf
    if bins < n:
        return 0.0
    lf = _log_factorials(bins) if _lf is None else _lf
    k = np.arange(1, n, dtype=np.int64)
    t = (lf[n] - lf[k + 1] - lf[n - k - 1]) + (lf[bins] - lf[k] - lf[bins - k])
    t += 3 * (k + 1) * np.log(k / bins)
    top = float(t.max())
    return (top + math.log(float(np.exp(t - top).sum()))) / math.log(2)


def _log_factorials(upto: int) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, upto + 1, dtype=np.float64)))))


def bin_count(n: int, statistical_bits: int = STATISTICAL_BITS) -> int:
    """The least B >= 1.27 n (and >= 1) with failure bound <= 2^-statistical_bits, to 1 %."""
    lo = max(math.ceil(MIN_LOAD_FACTOR * n), 1)
    hi = max(math.ceil(1.6 * n), 256)
    lf = _log_factorials(hi)

    def ok(b: int) -> bool:
        if b >= len(lf):
            return ok_big(b)
        return log2_failure_bound(n, b, lf) <= -statistical_bits

    def ok_big(b: int) -> bool:
        return log2_failure_bound(n, b) <= -statistical_bits

    if ok(lo):
        return lo
    while not ok(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > max(1, n // 100):  # the bound decreases as B grows
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def hash_items(items: list[bytes], seed: bytes, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(tags (n, 15) uint8, bin indices (n, 3) int64) of each item under ``seed``."""
    b2 = hashlib.blake2b
    raw = b"".join([b2(x, digest_size=_DIGEST, key=seed, person=_PERSON).digest() for x in items])
    d = np.frombuffer(raw, dtype=np.uint8).reshape(len(items), _DIGEST)
    tags = d[:, :15].copy()
    words = d[:, 16:40].copy().view("<u8").reshape(len(items), HASHES)
    return tags, (words % np.uint64(max(bins, 1))).astype(np.int64)


def cuckoo_insert(bin_of: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Place item i in one of the bins ``bin_of[i]``, one item per bin.

    Returns (item per bin, -1 for empty; hash index used per bin), or None when no
    placement exists. Parallel random-walk rounds first, then augmenting paths for what is left."""
    n = len(bin_of)
    table = np.full(bins, -1, dtype=np.int64)
    which = np.full(bins, -1, dtype=np.int8)
    pending = np.arange(n, dtype=np.int64)
    nxt = np.zeros(n, dtype=np.int8)  # the hash index each pending item tries next
    for _ in range(_PARALLEL_ROUNDS):  # parallel random-walk cuckoo: one claimant per bin
        if len(pending) == 0:
            break
        cand = bin_of[pending, nxt]
        uniq, first = np.unique(cand, return_index=True)
        evicted, evicted_h = table[uniq], which[uniq]
        table[uniq], which[uniq] = pending[first], nxt[first]
        lose = np.ones(len(pending), dtype=bool)
        lose[first] = False
        back = evicted >= 0
        pending = np.concatenate((pending[lose], evicted[back]))
        nxt = np.concatenate((nxt[lose] + 1, evicted_h[back] + 1)) % HASHES
    if len(pending) == 0:
        return table, which
    choices, tl, wl = bin_of.tolist(), table.tolist(), which.tolist()  # lists: fast to index
    for item in pending.tolist():
        if not _augment(item, choices, tl, wl):
            return None
    return np.array(tl, dtype=np.int64), np.array(wl, dtype=np.int8)


def _augment(item: int, bin_of: list[list[int]], table: list[int], which: list[int]) -> bool:
    """Insert ``item`` along a shortest augmenting path; False if there is none."""
    parent: dict[int, tuple[int, int, int]] = {}  # bin -> (item moving in, its hash, prev bin)
    queue: deque[tuple[int, int]] = deque([(item, -1)])
    while queue:
        it, came_from = queue.popleft()
        for h in range(HASHES):
            b = bin_of[it][h]
            if b in parent or b == came_from:
                continue
            parent[b] = (it, h, came_from)
            if table[b] == -1:  # free: shift every item on the path one step
                while b != -1:
                    it2, h2, prev = parent[b]
                    table[b], which[b] = it2, h2
                    b = prev
                return True
            queue.append((table[b], b))
    return False


def simple_hash_order(bin_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sender side: every (item, hash index) entry, flattened as 3*item + h, sorted by bin;
    returns (entries, their bins), both sorted by bin."""
    flat = bin_of.reshape(-1)
    order = np.argsort(flat, kind="stable")
    return order, flat[order]
