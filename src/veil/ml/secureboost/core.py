"""The algorithm shared by the plaintext reference and the federated label holder.

Histogram GBDT as in XGBoost's ``hist`` method: gradients and hessians are
quantised to fixed point once per tree (:class:`GHCodec`), histograms hold exact
integer sums, and split gain, default direction for missing values and leaf
weights are computed from those integers by the same code in both settings.
That is why federated trees equal the plaintext ones: encryption, packing and
transport only move the same integers around.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from veil.ml.secureboost.params import Objective, SBTParams


# -- objective ----------------------------------------------------------------
def base_score(y: np.ndarray, w: np.ndarray, objective: Objective) -> float:
    """Initial margin: weighted log-odds (binary) or weighted mean (regression)."""
    m = float(np.average(y, weights=w))
    if objective == Objective.BINARY:
        m = min(max(m, 1e-6), 1 - 1e-6)
        return math.log(m / (1 - m))
    return m


def grad_hess(
    y: np.ndarray, margin: np.ndarray, w: np.ndarray, objective: Objective
) -> tuple[np.ndarray, np.ndarray]:
    """First and second derivative of the (weighted) loss at ``margin``."""
    if objective == Objective.BINARY:
        p = 1.0 / (1.0 + np.exp(-margin))
        return (p - y) * w, np.maximum(p * (1 - p), 1e-16) * w
    return (margin - y) * w, w.astype(np.float64).copy()


def loss(y: np.ndarray, margin: np.ndarray, objective: Objective) -> float:
    """Validation loss for early stopping: log-loss or mean squared error."""
    if objective == Objective.BINARY:
        return float(np.mean(np.logaddexp(0.0, margin) - y * margin))
    return float(np.mean((margin - y) ** 2))


# -- fixed point --------------------------------------------------------------
@dataclass(frozen=True)
class GHCodec:
    """Fixed-point (g, h) and their packing ``T = h << wg | g`` (g signed).

    ``eg``/``eh`` are binary exponents chosen per tree so that |g|, |h| < 2**precision;
    ``wg``/``wh`` leave room for sums over every row, so a packed sum never overflows
    into its neighbour. ``slot`` bits hold one packed (G, H) sum.
    """

    eg: int
    eh: int
    wg: int
    wh: int

    @property
    def slot(self) -> int:
        return self.wg + self.wh

    @classmethod
    def for_tree(cls, g: np.ndarray, h: np.ndarray, n: int, precision: int) -> GHCodec:
        def exponent(v: np.ndarray) -> int:
            top = float(np.max(np.abs(v))) if v.size else 0.0
            return precision - (math.frexp(top)[1] if top > 0 else 0)

        width = precision + max(n, 1).bit_length() + 2
        return cls(exponent(g), exponent(h), width, width)

    def quantise(self, g: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int64 fixed-point g and h."""
        return (
            np.rint(np.ldexp(g, self.eg)).astype(np.int64),
            np.rint(np.ldexp(h, self.eh)).astype(np.int64),
        )

    def pack_rows(self, gi: np.ndarray, hi: np.ndarray) -> list[int]:
        """One integer per row carrying both its g and h."""
        wg = self.wg
        return [(int(b) << wg) + int(a) for a, b in zip(gi.tolist(), hi.tolist(), strict=True)]

    def unpack(self, t: int) -> tuple[int, int]:
        """(G, H) from a (sum of) packed integer(s)."""
        half = 1 << (self.wg - 1)
        g = ((t + half) & ((1 << self.wg) - 1)) - half
        return g, (t - g) >> self.wg

    def to_float(self, gi: np.ndarray | int, hi: np.ndarray | int) -> tuple[object, object]:
        return np.ldexp(np.asarray(gi, dtype=np.float64), -self.eg), np.ldexp(
            np.asarray(hi, dtype=np.float64), -self.eh
        )


# -- split finding ------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """The best split of one node within one party's histograms."""

    gain: float
    slot: int
    bin: int
    default_left: bool


def best_split(
    hg: np.ndarray,
    hh: np.ndarray,
    n_bins: np.ndarray,
    g_tot: int,
    h_tot: int,
    *,
    codec: GHCodec,
    p: SBTParams,
) -> Candidate | None:
    """Best (slot, bin, missing direction) over one party's (slots, bins) int64 sums.

    Left gets bins ``<= bin``; missing rows (node total minus the bins) go left when
    ``default_left``. Ties resolve to the first slot, bin, then missing-right.
    """
    if hg.size == 0:
        return None
    cg, ch = np.cumsum(hg, axis=1), np.cumsum(hh, axis=1)
    mg, mh = g_tot - cg[:, -1:], h_tot - ch[:, -1:]
    gl_i = np.stack([cg, cg + mg], axis=2)
    hl_i = np.stack([ch, ch + mh], axis=2)
    hr_i = h_tot - hl_i
    gl, hl = codec.to_float(gl_i, hl_i)
    gt, ht = codec.to_float(g_tot, h_tot)
    gl_f, hl_f = np.asarray(gl), np.asarray(hl)
    g_f, h_f = float(np.asarray(gt)), float(np.asarray(ht))
    gr_f, hr_f = g_f - gl_f, h_f - hl_f
    lam = p.reg_lambda
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = gl_f**2 / (hl_f + lam) + gr_f**2 / (hr_f + lam) - g_f**2 / (h_f + lam)
    bins = np.arange(hg.shape[1])[None, :, None]
    valid = (
        (hl_i > 0)
        & (hr_i > 0)
        & (hl_f >= p.min_child_weight)
        & (hr_f >= p.min_child_weight)
        # missing-right may split after the last bin; missing-left needs a bin on the right
        & (bins < (n_bins[:, None, None] - np.array([0, 1])[None, None, :]))
        & np.isfinite(gain)
    )
    gain = np.where(valid, gain, -np.inf)
    best = int(np.argmax(gain))
    if not gain.flat[best] > max(p.gamma, 0.0):
        return None
    s, b, d = np.unravel_index(best, gain.shape)
    return Candidate(float(gain.flat[best]), int(s), int(b), bool(d))


def leaf_weight(g_tot: int, h_tot: int, codec: GHCodec, p: SBTParams) -> float:
    """Newton step ``-G / (H + lambda)``, shrunk by the learning rate."""
    g, h = codec.to_float(g_tot, h_tot)
    return float(-float(np.asarray(g)) / (float(np.asarray(h)) + p.reg_lambda) * p.learning_rate)


# -- trees --------------------------------------------------------------------
@dataclass
class Node:
    """A tree node as the label holder stores it: who splits, under which record id."""

    id: int
    depth: int
    party: int = -1
    record: int = -1
    left: int = -1
    right: int = -1
    weight: float = 0.0
    gain: float = 0.0

    @property
    def is_leaf(self) -> bool:
        return self.left < 0

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def route(nodes: list[Node], goes_left: dict[tuple[int, int], np.ndarray], n: int) -> np.ndarray:
    """Leaf weight of each row; ``goes_left[(party, record)]`` is that split's decision."""
    at = np.zeros(n, dtype=np.int64)
    for node in nodes:  # node ids are list positions, parents before children
        if node.is_leaf:
            continue
        here = at == node.id
        left = goes_left[(node.party, node.record)]
        at[here & left] = node.left
        at[here & ~left] = node.right
    return np.array([nd.weight for nd in nodes], dtype=np.float64)[at]
