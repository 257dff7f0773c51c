"""RFC 9162 hashing and proofs against an independent, literal implementation of the RFC.

The reference below transcribes RFC 9162 section 2.1 recursively (MTH, PATH, PROOF,
SUBPROOF) over a list of entries; nothing is shared with ``veil.audit.merkle``. The
roots of the eight-entry tree are the published RFC 6962 test vectors (also used by
certificate-transparency-go and Trillian).
"""

from __future__ import annotations

import hashlib

import pytest

from veil.audit import merkle as m


def ref_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(i: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if i < k:
        return [*ref_path(i, d[:k]), ref_mth(d[k:])]
    return [*ref_path(i - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(mm: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if mm == n:
        return [] if b else [ref_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if mm <= k:
        return [*ref_subproof(mm, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(mm - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(mm: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(mm, d, True)


# RFC 6962 / CT test vectors: the leaves and the root of each prefix of the tree.
VECTOR_LEAVES = [bytes.fromhex(x) for x in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]  # fmt: skip
VECTOR_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


class Tree:
    """The module's incremental tree: frontier appends plus a store of perfect nodes."""

    def __init__(self) -> None:
        self.frontier: list[bytes] = []
        self.nodes: dict[m.Node, bytes] = {}
        self.size = 0

    def add(self, entry: bytes) -> None:
        leaf = m.leaf_hash(entry)
        self.nodes[(0, self.size)] = leaf
        for node, h in m.push_leaf(self.frontier, self.size, leaf):
            self.nodes[node] = h
        self.size += 1

    def source(self, keys: object) -> dict[m.Node, bytes]:
        return {k: self.nodes[k] for k in keys if k in self.nodes}  # type: ignore[attr-defined]

    def get(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        return m.resolve(ranges, self.source)


def entries(n: int) -> list[bytes]:
    return [f"entry-{i}".encode() for i in range(n)]


def test_rfc6962_vectors() -> None:
    t = Tree()
    for i, e in enumerate(VECTOR_LEAVES):
        t.add(e)
        assert m.root_of_frontier(t.frontier).hex() == VECTOR_ROOTS[i]
        assert ref_mth(VECTOR_LEAVES[: i + 1]).hex() == VECTOR_ROOTS[i]
    assert ref_mth([]) == m.EMPTY_ROOT


@pytest.mark.parametrize("n", [*range(1, 34), 63, 64, 65, 100])
def test_roots_and_proofs_equal_reference(n: int) -> None:
    d = entries(n)
    t = Tree()
    for e in d:
        t.add(e)
    root = ref_mth(d)
    assert m.root_of_frontier(t.frontier) == root
    assert t.get([(0, n)]) == [root]
    for i in range(n):
        path = t.get(m.inclusion_ranges(i, n))
        assert path == ref_path(i, d)
        assert m.verify_inclusion(m.leaf_hash(d[i]), i, n, path, root)
    for k in range(1, n + 1):
        proof = t.get(m.consistency_ranges(k, n))
        assert proof == ref_proof(k, d)
        assert m.verify_consistency(k, n, ref_mth(d[:k]), root, proof)


def test_verifiers_reject_wrong_proofs() -> None:
    d = entries(13)
    root = ref_mth(d)
    path = ref_path(5, d)
    leaf = m.leaf_hash(d[5])
    assert m.verify_inclusion(leaf, 5, 13, path, root)
    assert not m.verify_inclusion(m.leaf_hash(b"forged"), 5, 13, path, root)
    assert not m.verify_inclusion(leaf, 4, 13, path, root)  # wrong position
    assert not m.verify_inclusion(leaf, 5, 8, path, root)  # wrong size (other tree shape)
    assert not m.verify_inclusion(leaf, 5, 13, path[:-1], root)  # short path
    assert not m.verify_inclusion(leaf, 5, 13, [*path, path[0]], root)  # long path
    bad = [bytes(32), *path[1:]]
    assert not m.verify_inclusion(leaf, 5, 13, bad, root)
    assert not m.verify_inclusion(leaf, 13, 13, path, root)
    for k in (1, 4, 7, 12):
        proof = ref_proof(k, d)
        old = ref_mth(d[:k])
        assert m.verify_consistency(k, 13, old, root, proof)
        assert not m.verify_consistency(k, 13, ref_mth(entries(k + 1)[1:]), root, proof)
        assert not m.verify_consistency(k, 13, old, ref_mth(entries(14)), proof)
        assert not m.verify_consistency(k, 13, old, root, proof[:-1])
        assert not m.verify_consistency(k + 1, 13, old, root, proof)
    # a rewritten history: same size, one entry changed
    d2 = list(d)
    d2[3] = b"rewritten"
    assert not m.verify_consistency(8, 13, ref_mth(d[:8]), ref_mth(d2), ref_proof(8, d2))
    assert m.verify_consistency(13, 13, root, root, [])
    assert not m.verify_consistency(0, 13, m.EMPTY_ROOT, root, [])


def test_frontier_nodes_match_push() -> None:
    t = Tree()
    for e in entries(45):
        t.add(e)
    assert [t.nodes[n] for n in m.frontier_nodes(45)] == t.frontier
