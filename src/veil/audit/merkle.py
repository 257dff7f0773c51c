"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing and proofs.

Leaf hash ``SHA-256(0x00 || entry)``, node hash ``SHA-256(0x01 || left || right)``;
the tree of ``n`` leaves splits at the largest power of two below ``n`` (section
2.1.1). Inclusion proofs (2.1.3) and consistency proofs (2.1.4) are built from a
``subtree(lo, hi)`` hash source and verified with the RFC's iterative algorithms,
so any RFC 9162 / RFC 6962 verifier accepts them.

A log stores the hash of every *perfect, aligned* subtree (``2**level`` leaves
starting at ``index * 2**level``). Any subtree the RFC recursion names is a right
fold of at most ``log2 n`` such nodes, so a proof needs O(log n) stored hashes, and
an append needs only the *frontier* (the roots of the perfect subtrees along the
right edge) to produce the new root and the newly completed nodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_LEN = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Node = tuple[int, int]  # (level, index): 2**level leaves from index * 2**level
NodeSource = Callable[[Iterable[Node]], dict[Node, bytes]]


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def frontier_nodes(size: int) -> list[Node]:
    """The perfect subtrees along the right edge of a tree of ``size`` leaves, left first."""
    out: list[Node] = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, start >> level))
            start += 1 << level
    return out


def root_of_frontier(frontier: Sequence[bytes]) -> bytes:
    """The tree root from its frontier hashes (left to right); the empty tree's is SHA-256('')."""
    if not frontier:
        return EMPTY_ROOT
    acc = frontier[-1]
    for h in reversed(frontier[:-1]):
        acc = node_hash(h, acc)
    return acc


def push_leaf(frontier: list[bytes], size: int, leaf: bytes) -> list[tuple[Node, bytes]]:
    """Append ``leaf`` as leaf number ``size``; update ``frontier`` in place.

    Returns the interior nodes (level >= 1) that the append completed.
    """
    done: list[tuple[Node, bytes]] = []
    acc, level, index = leaf, 0, size
    while index & 1:
        acc = node_hash(frontier.pop(), acc)
        level, index = level + 1, index >> 1
        done.append(((level, index), acc))
    frontier.append(acc)
    return done


def decompose(lo: int, hi: int) -> list[Node]:
    """The perfect aligned nodes, left to right, whose right fold is ``MTH(D[lo:hi])``.

    Valid for the ranges the RFC recursion produces: ``lo`` is a multiple of the
    largest power of two not above ``hi - lo``.
    """
    out: list[Node] = []
    while hi - lo > 0:
        n = hi - lo
        k = 1 << (n.bit_length() - 1)
        out.append(((k.bit_length() - 1), lo // k))
        lo += k
    return out


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees ``(lo, hi)`` whose hashes form PATH(index, D[0:size]), leaf first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    out: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()
    return out


def consistency_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """The subtrees ``(lo, hi)`` whose hashes form PROOF(m, D[0:n]) (RFC 9162 2.1.4.1)."""
    if not 0 < m <= n:
        raise ValueError(f"no consistency proof from {m} to {n}")
    out: list[tuple[int, int]] = []
    lo, hi, complete = 0, n, True
    while True:
        if m - lo == hi - lo:
            if not complete:
                out.append((lo, hi))
            break
        k = split_point(hi - lo)
        if m - lo <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, complete = lo + k, False
    out.reverse()
    return out


def resolve(ranges: Sequence[tuple[int, int]], source: NodeSource) -> list[bytes]:
    """The hashes of ``ranges`` from stored perfect nodes, fetched in one call."""
    parts = [decompose(lo, hi) for lo, hi in ranges]
    found = source({n for p in parts for n in p})
    missing = {n for p in parts for n in p} - found.keys()
    if missing:
        raise LookupError(f"tree nodes {sorted(missing)[:3]} are missing from the store")
    return [root_of_frontier([found[n] for n in p]) for p in parts]


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: does ``path`` prove leaf ``index`` under ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(m: int, n: int, first: bytes, second: bytes, path: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2: does ``path`` prove tree ``m`` is a prefix of tree ``n``?"""
    if not 0 < m <= n:
        return False
    if m == n:
        return not path and first == second
    if not path:
        return False
    proof = list(path)
    if m & (m - 1) == 0:  # m is a power of two: the first tree is a node of the second
        proof.insert(0, first)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first and sr == second
