"""Level-wise tree growth and the boosting loop, run by the label holder.

The label holder drives; each party (itself included) is a :class:`Side` that
returns integer histograms for nodes and applies the splits it owns. A plaintext
side reads its own bins; a remote side (:mod:`.protocol`) gets the same integers
from a partner through encrypted histograms. Histogram subtraction: of two
siblings only the one with fewer rows is built, the other is parent minus it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from veil.errors import ProtocolError
from veil.ml.secureboost.core import (
    GHCodec,
    Node,
    base_score,
    best_split,
    grad_hess,
    leaf_weight,
    loss,
    route,
)
from veil.ml.secureboost.params import SBTParams

Hist = tuple[np.ndarray, np.ndarray]  # (slots, bins) int64 sums of g and of h


@dataclass(frozen=True)
class SplitRequest:
    """Split node ``node`` (rows ``rows``) at the side's ``slot``/``bin``."""

    node: int
    rows: np.ndarray
    slot: int
    bin: int
    default_left: bool


class Side(Protocol):
    """One party as seen by the tree grower."""

    def begin_tree(
        self, t: int, gi: np.ndarray, hi: np.ndarray, rows: np.ndarray, codec: GHCodec
    ) -> None: ...
    def n_bins(self) -> np.ndarray: ...
    def histograms(self, node_of: np.ndarray, build: list[int]) -> list[Hist]: ...
    def split(self, reqs: list[SplitRequest]) -> list[tuple[int, np.ndarray, np.ndarray]]: ...


@dataclass
class Ensemble:
    """What the label holder knows of the model: structure, leaf weights, gains."""

    base: float
    trees: list[list[Node]] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)

    def margin(self, goes_left: list[dict[tuple[int, int], np.ndarray]], n: int) -> np.ndarray:
        out = np.full(n, self.base)
        for nodes, gl in zip(self.trees, goes_left, strict=True):
            out += route(nodes, gl, n)
        return out


def grow_tree(
    sides: list[Side],
    gi: np.ndarray,
    hi: np.ndarray,
    rows: np.ndarray,
    *,
    codec: GHCodec,
    p: SBTParams,
    n_valid: int,
) -> tuple[list[Node], dict[tuple[int, int], np.ndarray], np.ndarray]:
    """One tree on the sampled ``rows``.

    Returns its nodes, each split's routing of the validation rows, and each
    training row's leaf.
    """
    n = gi.shape[0]
    node_of = np.zeros(n, dtype=np.int64)  # every row is routed ...
    sampled = np.zeros(n, dtype=bool)  # ... but only sampled rows enter histograms
    sampled[rows] = True
    nodes = [Node(0, 0)]
    sums = {0: (int(gi[rows].sum()), int(hi[rows].sum()))}
    counts = {0: len(rows)}
    hists: dict[int, list[Hist]] = {}
    parent: dict[int, int] = {}
    valid_left: dict[tuple[int, int], np.ndarray] = {}
    level = [0]
    for depth in range(p.max_depth):
        if not level:
            break
        build = [
            nid
            for nid in level
            if nid == 0
            or counts[nid] < counts[_sibling(nodes, parent, nid)]
            or (
                counts[nid] == counts[_sibling(nodes, parent, nid)]
                and nid < _sibling(nodes, parent, nid)
            )
        ]
        in_hist = np.where(sampled, node_of, -1)
        got = [side.histograms(in_hist, build) for side in sides]
        for i, nid in enumerate(build):
            hists[nid] = [g[i] for g in got]
        for nid in level:
            if nid not in hists:
                sib, par = _sibling(nodes, parent, nid), parent[nid]
                hists[nid] = [
                    (pg - sg, ph - sh)
                    for (pg, ph), (sg, sh) in zip(hists[par], hists[sib], strict=True)
                ]
        reqs: list[list[SplitRequest]] = [[] for _ in sides]
        chosen: list[tuple[int, int, float]] = []
        for nid in level:
            best, who = None, -1
            for k, side in enumerate(sides):
                hg, hh = hists[nid][k]
                c = best_split(hg, hh, side.n_bins(), *sums[nid], codec=codec, p=p)
                if c is not None and (best is None or c.gain > best.gain):
                    best, who = c, k
            if best is None:
                continue
            node_rows = np.flatnonzero(node_of == nid)
            reqs[who].append(SplitRequest(nid, node_rows, best.slot, best.bin, best.default_left))
            chosen.append((nid, who, best.gain))
        results: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        for k, side in enumerate(sides):
            if reqs[k]:
                for rq, res in zip(reqs[k], side.split(reqs[k]), strict=True):
                    results[rq.node] = res
        nxt = []
        for nid, who, gain in chosen:
            record, left, vleft = results[nid]
            node_rows = np.flatnonzero(node_of == nid)
            if left.shape != node_rows.shape or vleft.shape != (n_valid,):
                raise ProtocolError(f"party {who} returned a partition of the wrong size")
            node = nodes[nid]
            node.party, node.record, node.gain = who, record, gain
            valid_left[(who, record)] = vleft.astype(bool)
            for is_left, rs in ((True, node_rows[left]), (False, node_rows[~left])):
                child = Node(len(nodes), depth + 1)
                nodes.append(child)
                parent[child.id] = nid
                node_of[rs] = child.id
                sums[child.id] = (int(gi[rs].sum()), int(hi[rs].sum()))
                counts[child.id] = int(sampled[rs].sum())
                if is_left:
                    node.left = child.id
                else:
                    node.right = child.id
                nxt.append(child.id)
        for nid in level:
            hists.pop(parent.get(nid, -1), None)
        level = nxt
    for node in nodes:
        if node.is_leaf:
            node.weight = leaf_weight(*sums[node.id], codec, p)
    return nodes, valid_left, node_of


def _sibling(nodes: list[Node], parent: dict[int, int], nid: int) -> int:
    par = nodes[parent[nid]]
    return par.right if par.left == nid else par.left


def boost(
    sides: list[Side],
    y: np.ndarray,
    w: np.ndarray,
    p: SBTParams,
    *,
    valid_y: np.ndarray | None = None,
    on_tree: Callable[[int], None] | None = None,
) -> tuple[Ensemble, int]:
    """The boosting loop; returns the ensemble and the number of trees kept."""
    n = y.shape[0]
    ens = Ensemble(base_score(y, w, p.objective))
    margin = np.full(n, ens.base)
    nv = 0 if valid_y is None else valid_y.shape[0]
    vmargin = np.full(nv, ens.base)
    best, best_at = np.inf, 0
    for t in range(p.n_trees):
        g, h = grad_hess(y, margin, w, p.objective)
        rows = _subsample(n, p, t)
        codec = GHCodec.for_tree(g[rows], h[rows], len(rows), p.precision_bits)
        gi, hi = codec.quantise(g, h)
        out = np.ones(n, dtype=bool)
        out[rows] = False
        gi[out], hi[out] = 0, 0
        for side in sides:
            side.begin_tree(t, gi, hi, rows, codec)
        nodes, vleft, leaf_of = grow_tree(sides, gi, hi, rows, codec=codec, p=p, n_valid=nv)
        ens.trees.append(nodes)
        margin += np.array([nd.weight for nd in nodes])[leaf_of]
        if on_tree is not None:
            on_tree(t)
        if valid_y is not None:
            vmargin += route(nodes, vleft, nv)
            vl = loss(valid_y, vmargin, p.objective)
            ens.valid_loss.append(vl)
            if vl < best - 1e-12:
                best, best_at = vl, t + 1
            elif p.early_stopping_rounds and t + 1 - best_at >= p.early_stopping_rounds:
                break
        else:
            best_at = t + 1
    keep = best_at if (valid_y is not None and p.early_stopping_rounds) else len(ens.trees)
    del ens.trees[keep:]
    return ens, keep


def _subsample(n: int, p: SBTParams, t: int) -> np.ndarray:
    """Rows of tree ``t`` (sorted); all rows unless ``subsample < 1``."""
    if p.subsample >= 1.0:
        return np.arange(n)
    rng = np.random.default_rng([p.seed, 1, t])
    k = max(1, round(p.subsample * n))
    return np.sort(rng.choice(n, size=k, replace=False))


def colsample_size(n_features: int, p: SBTParams) -> int:
    """How many of ``n_features`` a party offers per tree (what :func:`colsample` draws)."""
    if p.colsample >= 1.0 or n_features == 0:
        return n_features
    return max(1, round(p.colsample * n_features))


def colsample(n_features: int, p: SBTParams, party: int, t: int) -> np.ndarray:
    """Features a party offers in tree ``t`` (sorted); each party samples its own."""
    k = colsample_size(n_features, p)
    if k == n_features:
        return np.arange(n_features)
    rng = np.random.default_rng([p.seed, 2, party, t])
    return np.sort(rng.choice(n_features, size=k, replace=False))
