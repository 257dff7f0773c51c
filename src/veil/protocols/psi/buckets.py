"""Hash-to-bucket helpers for RR22-PSI (:mod:`.rr22`, protocol version 3): no I/O.

:func:`hashed_ids` hashes a party's ids chunk by chunk into one digest array grown in
place; each id's 128-bit digest (keyed AES, :mod:`.aeshash`: pseudorandom) falls into one of
2^SHARD_BITS fine *shards* by its top bits; a party groups its digests by shard with a
stable counting sort, so the input position of each row is the sort order itself and
duplicates (equal digests, hence one shard) are found shard by shard, with no hash
table over all n. For the protocol the shards are merged into B (a power of two)
consecutive *buckets*, B fixed by the two set sizes alone; every bucket is padded to a
public bound that a Binomial(n, 1/B) count exceeds with probability <= 2^-stat_sec over
all B buckets (:func:`bound`), so nothing about the real per-bucket counts is revealed.
SecretFlow's bucket PSI bins the same way, without the padding. :func:`match` finds
the receiver's values among the sender's within a bucket; :func:`learned` maps the
RESULT's wire positions back to the sender's ids.

Memory: :func:`hold_ids` keeps a party's ids for a run (:class:`HeldIds`) either in
memory (16 bytes of digest and 4-8 bytes of order per id) or, given a folder, spilled
to files of consecutive shards (:class:`.spill.BucketStore` of 24-byte records: digest,
input position), hashed chunk by chunk; each shard's distinct digests are counted
before the protocol starts, then one protocol bucket at a time is read back (and
de-duplicated, first occurrence kept, where a file holds repeats), so the memory of a
run does not grow with the number of ids.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import pandas as pd

from veil.errors import ConfigError
from veil.protocols.psi import aeshash
from veil.protocols.psi.common import encode_ids
from veil.protocols.psi.ecdh import id_chunks
from veil.protocols.psi.spill import BucketStore, bits_for

SHARD_BITS = 10
SHARDS = 1 << SHARD_BITS
DEDUPE_ROWS = 1 << 18  # rows per de-duplication group (whole shards)
SORT_ROWS = 1 << 20  # rows per block of the counting sort
LOOKUP_ROWS = 1 << 18  # result positions per block of learned()
RECORD = np.dtype([("digest", "<u8", (2,)), ("pos", "<i8")])  # a spilled id: 24 bytes


@dataclass(frozen=True)
class Grouped:
    """A party's distinct digests grouped by shard: ``order`` holds the input positions
    of the distinct rows (first occurrences), shard by shard, ascending within a shard;
    ``offsets`` (SHARDS + 1) says where each shard starts in ``order``."""

    order: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.order)

    def bucket_offsets(self, buckets: int) -> np.ndarray:
        """Where each of ``buckets`` buckets (consecutive shards) starts in ``order``."""
        return self.offsets[:: SHARDS // buckets]


def hashed_ids(ids: Iterable[str] | Sequence[str], key: bytes) -> tuple[np.ndarray, Grouped, int]:
    """(the (count, 2) uint64 digests of the ids in input order, the distinct ones grouped
    by shard, the number of input ids), hashing chunk by chunk so that only the compact
    digests are kept, never the ids; the digest array grows in place."""
    size = len(ids) if isinstance(ids, Sequence) else aeshash.CHUNK
    digests = np.empty((max(size, 1), 2), dtype=np.uint64)
    n_input = 0
    for chunk in id_chunks(ids, aeshash.CHUNK):
        d = aeshash.id_digests(encode_ids(chunk, start=n_input), key)
        if n_input + len(d) > len(digests):  # realloc: no second copy of the digests
            digests.resize((max(len(digests) * 3 // 2, n_input + len(d)), 2), refcheck=False)
        digests[n_input : n_input + len(d)] = d
        n_input += len(d)
        del d
    digests.resize((n_input, 2), refcheck=False)
    return digests, group(digests), n_input


class HeldIds:
    """A party's distinct digests by shard with their input positions, for one run:
    in memory (the digests in input order and their :class:`Grouped` order) or spilled
    (:data:`RECORD` s in the files of a :class:`.spill.BucketStore`, removed by
    :meth:`close` or on leaving a ``with`` block). :meth:`bucket` gives the protocol
    buckets one at a time, in the same order either way."""

    def __init__(
        self,
        n_input: int,
        offsets: np.ndarray,
        *,
        memory: tuple[np.ndarray, np.ndarray] | None = None,
        spilled: _Spilled | None = None,
    ) -> None:
        self.n_input = n_input  # ids read, repeats included
        self.offsets = offsets  # (SHARDS + 1): where each shard starts among the distinct
        self._memory = memory  # (digests in input order, Grouped.order)
        self._spilled = spilled

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def bucket_offsets(self, buckets: int) -> np.ndarray:
        """Where each of ``buckets`` buckets (consecutive shards) starts among the
        distinct ids."""
        return self.offsets[:: SHARDS // buckets]

    def bucket(self, b: int, buckets: int) -> tuple[np.ndarray, np.ndarray]:
        """Bucket ``b`` of ``buckets``: (its distinct digests, (k, 2) uint64; their input
        positions, :func:`index_dtype`), shard by shard, ascending within a shard. Call
        it for b = 0, 1, ... in turn: a spilled file is read once, then removed."""
        lo, hi = b * (SHARDS // buckets), (b + 1) * (SHARDS // buckets)
        if self._memory is not None:
            digests, order = self._memory
            rows = order[self.offsets[lo] : self.offsets[hi]]
            return digests[rows], rows
        assert self._spilled is not None
        rec = self._spilled.shards(lo, hi)
        return np.ascontiguousarray(rec["digest"]), rec["pos"].astype(index_dtype(self.n_input))

    def close(self) -> None:
        """Forget the ids; remove the spilled files."""
        self._memory = None
        if self._spilled is not None:
            self._spilled.store.close()

    def __enter__(self) -> HeldIds:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Spilled:
    """Spilled records: file t of ``store`` holds shards [t << shift, (t + 1) << shift)
    in input order, repeats included where ``repeats[t]``."""

    def __init__(self, store: BucketStore, repeats: np.ndarray) -> None:
        self.store, self.repeats = store, repeats
        self.shift = SHARD_BITS - store.bits
        self._last: tuple[int, np.ndarray, np.ndarray] | None = None  # t, records, shards

    def shards(self, lo: int, hi: int) -> np.ndarray:
        """The distinct records of shards [lo, hi), shard by shard, input order within."""
        parts = []
        for t in range(lo >> self.shift, ((hi - 1) >> self.shift) + 1):
            rec, sh = self._load(t)
            a, z = np.searchsorted(sh, [lo, hi]).tolist()
            parts.append(rec[a:z])
        return np.concatenate(parts)

    def _load(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """File t's distinct records sorted by shard (stable), kept until the next file."""
        if self._last is None or self._last[0] != t:
            rec = self.store.read(t)
            self.store.drop(t)
            if self.repeats[t]:
                rec = rec[~duplicate_rows(rec["digest"])]
            sh = shards(rec["digest"])
            order = np.argsort(sh, kind="stable")
            self._last = (t, rec[order], sh[order])
        return self._last[1], self._last[2]


def hold_ids(ids: Iterable[str] | Sequence[str], key: bytes, folder: str | None) -> HeldIds:
    """A party's ids hashed under ``key`` and grouped by shard (first occurrence of each
    digest kept): in memory (:func:`hashed_ids`) with ``folder`` None, else spilled to a
    private folder under ``folder``, chunk by chunk, into files of consecutive shards
    (one per shard for a stream; fewer for a list, :func:`.spill.bits_for`); each file
    is read once to count its distinct digests per shard (a file holding repeats is
    de-duplicated again when read back), so that no array grows with the ids."""
    if folder is None:
        digests, grouped, n_input = hashed_ids(ids, key)
        return HeldIds(n_input, grouped.offsets, memory=(digests, grouped.order))
    size = len(ids) if isinstance(ids, Sequence) else None
    store = BucketStore(RECORD, bits_for(size, SHARD_BITS), folder)
    try:
        shift, n_input = SHARD_BITS - store.bits, 0
        for chunk in id_chunks(ids, aeshash.CHUNK):
            d = aeshash.id_digests(encode_ids(chunk, start=n_input), key)
            rec = np.empty(len(d), dtype=RECORD)
            rec["digest"] = d
            rec["pos"] = np.arange(n_input, n_input + len(d))
            store.add(rec, shards(d) >> shift)
            n_input += len(d)
        store.flush()
        counts = np.zeros(SHARDS, dtype=np.int64)
        repeats = np.zeros(store.buckets, dtype=bool)
        for t in range(store.buckets):
            if store.count(t):
                digests = store.read(t)["digest"]
                dup = duplicate_rows(digests)
                repeats[t] = dup.any()
                counts += np.bincount(shards(digests[~dup]), minlength=SHARDS)
        offsets = np.zeros(SHARDS + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return HeldIds(n_input, offsets, spilled=_Spilled(store, repeats))
    except BaseException:
        store.close()
        raise


def index_dtype(limit: int) -> type[np.signedinteger]:
    """The smaller of int32 / int64 that holds every index below ``limit``."""
    return np.int32 if limit < 1 << 31 else np.int64


def shards(digests: np.ndarray) -> np.ndarray:
    """The shard of each (n, 2) uint64 digest: the top SHARD_BITS bits of its second word."""
    return (digests[:, 1] >> np.uint64(64 - SHARD_BITS)).astype(np.uint16)


def group(digests: np.ndarray) -> Grouped:
    """The distinct rows of ``digests`` (n, 2) uint64 grouped by shard (first occurrence
    of each digest kept): a stable counting sort on the shard, then de-duplication
    shard group by shard group."""
    order, offsets = shard_order(digests)
    drop: np.ndarray | None = None
    for lo, hi in _groups(offsets):
        dup = duplicate_rows(digests[order[lo:hi]])
        if dup.any():
            if drop is None:
                drop = np.zeros(len(order), dtype=bool)
            drop[lo:hi] = dup
    if drop is None:
        return Grouped(order, offsets)
    before = np.zeros(len(order) + 1, dtype=np.int64)  # distinct rows before each row
    np.cumsum(~drop, out=before[1:])
    return Grouped(order[~drop], before[offsets])


def shard_order(digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the row positions sorted by shard, stable; where each shard starts): a counting
    sort in two passes over blocks of rows, so that the only array of size n made is
    the order itself (int32 below 2^31 rows)."""
    n = len(digests)
    counts = np.zeros(SHARDS, dtype=np.int64)
    for lo in range(0, n, SORT_ROWS):
        counts += np.bincount(shards(digests[lo : lo + SORT_ROWS]), minlength=SHARDS)
    offsets = np.zeros(SHARDS + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    order = np.empty(n, dtype=index_dtype(n))
    cursor = offsets[:-1].copy()  # the next free slot of each shard
    for lo in range(0, n, SORT_ROWS):
        sh = shards(digests[lo : lo + SORT_ROWS])
        local = np.argsort(sh, kind="stable")  # a radix sort on 16-bit keys
        c = np.bincount(sh, minlength=SHARDS)
        sorted_sh = sh[local]
        rank = np.arange(len(sh)) - (np.cumsum(c) - c)[sorted_sh]  # rank within its shard
        order[cursor[sorted_sh] + rank] = local + lo
        cursor += c
    return order, offsets


def _groups(offsets: np.ndarray) -> list[tuple[int, int]]:
    """Ranges of ``order`` made of whole shards, about DEDUPE_ROWS rows each."""
    out, lo = [], 0
    for s in range(1, SHARDS + 1):
        hi = int(offsets[s])
        if hi - lo >= DEDUPE_ROWS or (s == SHARDS and hi > lo):
            out.append((lo, hi))
            lo = hi
    return out


def duplicate_rows(d: np.ndarray) -> np.ndarray:
    """For each row of ``d`` ((k, 2) uint64), whether an earlier row equals it: a hash on
    the first words, exact on both where first words repeat."""
    if len(d) == 0:
        return np.zeros(0, dtype=bool)
    low = pd.Index(d[:, 0])
    dup = np.array(low.duplicated(keep="first"))
    if dup.any():
        same = np.flatnonzero(low.duplicated(keep=False))
        pairs = pd.MultiIndex.from_arrays([d[same, 0], d[same, 1]])
        dup[same] = pairs.duplicated(keep="first")
    return dup


def bound(n: int, buckets: int, stat_sec: int) -> int:
    """The public padded size of a bucket of n ids spread over ``buckets`` buckets: n when
    there is one bucket, else k with buckets * P[Binomial(n, 1/buckets) > k] <=
    2^-stat_sec, by Bernstein's inequality: with mu = n / B and L = (stat_sec + log2 B)
    ln 2, k = ceil(mu + L/3 + sqrt(L^2/9 + 2 mu L)) (at most n)."""
    _check(n, buckets, stat_sec)
    if buckets == 1:
        return n
    mu = n / buckets
    lam = (stat_sec + math.log2(buckets)) * math.log(2)
    return min(n, math.ceil(mu + lam / 3 + math.sqrt(lam * lam / 9 + 2 * mu * lam)))


def bucket_count(n: int, m: int, stat_sec: int, target: int) -> int:
    """B, the number of buckets for sets of n and m ids: 1 when both fit ``target`` ids,
    else the least power of two whose padded bound of the larger set is at most
    ``target`` (at most SHARDS)."""
    big = max(n, m)
    buckets = 1
    while buckets < SHARDS and bound(big, buckets, stat_sec) > target:
        buckets *= 2
    return buckets


def _check(n: int, buckets: int, stat_sec: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError("n", f"must be a non-negative integer, got {n!r}")
    if not isinstance(buckets, int) or not 1 <= buckets <= SHARDS or buckets & (buckets - 1):
        raise ConfigError("buckets", f"must be a power of two in 1..{SHARDS}, got {buckets!r}")
    if isinstance(stat_sec, bool) or not isinstance(stat_sec, int) or stat_sec < 1:
        raise ConfigError("stat_sec", f"must be a positive integer, got {stat_sec!r}")


# -- matching within buckets --------------------------------------------------------


def match(own: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``own`` found among the rows of ``theirs``, the row of ``theirs`` each
    matched), in ascending order of the latter: the sender's shuffled wire order, which
    both parties report and which says nothing about the receiver's input order.
    ``own`` and ``theirs`` are (count, 2) uint64; a hash join on the low words (the
    values are pseudorandom), exact on the high words."""
    o1, o2 = own[:, 0], own[:, 1]
    t1, t2 = theirs[:, 0], theirs[:, 1]
    index = pd.Index(t1)
    if index.is_unique:
        at = index.get_indexer(o1)
        found = np.flatnonzero(at >= 0)
        found = found[t2[at[found]] == o2[found]]
        at = at[found]
    else:  # two of the peer's values share 8 bytes: about (m^2 / 2^65), still exact
        found, at = _match_sorted(o1, o2, t1, t2)
    owner = np.full(len(theirs), -1, dtype=np.int64)  # theirs row -> own row (linear sort)
    owner[at] = found  # a row of theirs matches at most one own row: own rows are distinct
    positions = np.flatnonzero(owner >= 0)
    return owner[positions], positions


def _match_sorted(
    o1: np.ndarray, o2: np.ndarray, t1: np.ndarray, t2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((t2, t1))
    s1, s2 = t1[order], t2[order]
    lo = np.searchsorted(s1, o1, side="left")
    hi = np.searchsorted(s1, o1, side="right")
    for i in np.flatnonzero(hi - lo > 1).tolist():  # same first word: search the second
        lo[i] += np.searchsorted(s2[lo[i] : hi[i]], o2[i])
    at = np.minimum(lo, max(len(s1) - 1, 0))
    hit = (lo < hi) & (s2[at] == o2) if len(s2) else np.zeros(len(o1), dtype=bool)
    found = np.flatnonzero(hit)
    return found, order[at[found]]


def learned(pos: np.ndarray, wire: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The input positions of the ids at wire positions ``pos`` (RESULT), by blocks; a
    padding value's position (a false match) is dropped, repeats are kept once."""
    if len(pos) > 1 and not (pos[1:] > pos[:-1]).all():  # not as sent by Veil
        pos = np.unique(pos)
    out = np.empty(len(pos), dtype=order.dtype)
    k = 0
    for lo in range(0, len(pos), LOOKUP_ROWS):
        p = pos[lo : lo + LOOKUP_ROWS].astype(wire.dtype)
        at = np.minimum(np.searchsorted(wire, p), len(wire) - 1)
        real = at[wire[at] == p]
        out[k : k + len(real)] = order[real]
        k += len(real)
    return out[:k]
