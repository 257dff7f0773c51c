"""Plaintext SecureBoost: the reference the federated protocol must equal.

:class:`PlainSide` is one party's features seen in the clear. The label holder
uses it for its own features in the federated run, and :func:`fit_plain` uses one
per party to train the same trees without any cryptography.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from veil.ml.labels import sample_weights
from veil.ml.secureboost.binning import MISSING, Bins, apply_bins, fit_bins
from veil.ml.secureboost.core import GHCodec
from veil.ml.secureboost.grow import Ensemble, Hist, SplitRequest, boost, colsample
from veil.ml.secureboost.params import Objective, SBTParams


@dataclass(frozen=True)
class Record:
    """A split a party owns: feature index, threshold (x <= threshold goes left)."""

    feature: int
    threshold: float
    default_left: bool
    tree: int

    def goes_left(self, x: np.ndarray) -> np.ndarray:
        col = x[:, self.feature]
        return np.where(np.isnan(col), self.default_left, col <= self.threshold)


def hist_groups(
    codes: np.ndarray, cols: np.ndarray, in_hist: np.ndarray, build: list[int], max_bins: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """(row, group) pairs of the histogram: group = (node, slot, bin), missing skipped."""
    slot_of = np.full(int(max(in_hist.max(initial=0), max(build, default=0))) + 1, -1)
    slot_of[build] = np.arange(len(build))
    rows = np.flatnonzero(in_hist >= 0)
    rows = rows[slot_of[in_hist[rows]] >= 0]
    node = slot_of[in_hist[rows]]
    c = codes[np.ix_(rows, cols)].astype(np.int64)
    groups = (node[:, None] * len(cols) + np.arange(len(cols))[None, :]) * max_bins + c
    groups[c == MISSING] = -1
    return rows, groups, len(build) * len(cols) * max_bins


class PlainSide:
    """One party's features in the clear (the label holder's own, or all in the reference)."""

    def __init__(self, party: int, bins: Bins, valid_codes: np.ndarray, p: SBTParams) -> None:
        self.party, self.bins, self.valid_codes, self.p = party, bins, valid_codes, p
        self.records: list[Record] = []
        self.max_bins = int(bins.n_bins.max(initial=1))
        self.cols = np.arange(0)
        self.t = 0

    def begin_tree(
        self, t: int, gi: np.ndarray, hi: np.ndarray, rows: np.ndarray, codec: GHCodec
    ) -> None:
        usable = np.flatnonzero(self.bins.n_bins > 1)
        self.cols = usable[colsample(len(usable), self.p, self.party, t)]
        self.gi, self.hi, self.t = gi, hi, t

    def n_bins(self) -> np.ndarray:
        return self.bins.n_bins[self.cols]

    def histograms(self, in_hist: np.ndarray, build: list[int]) -> list[Hist]:
        rows, groups, n_groups = hist_groups(
            self.bins.codes, self.cols, in_hist, build, self.max_bins
        )
        ok = groups >= 0
        g = np.zeros(n_groups, dtype=np.int64)
        h = np.zeros(n_groups, dtype=np.int64)
        rr = np.broadcast_to(rows[:, None], groups.shape)[ok]
        np.add.at(g, groups[ok], self.gi[rr])
        np.add.at(h, groups[ok], self.hi[rr])
        shape = (len(build), len(self.cols), self.max_bins)
        g, h = g.reshape(shape), h.reshape(shape)
        return [(g[i], h[i]) for i in range(len(build))]

    def split(self, reqs: list[SplitRequest]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        out = []
        for rq in reqs:
            rec = self.add_record(int(self.cols[rq.slot]), rq.bin, rq.default_left)
            left = left_of_codes(self.bins.codes[rq.rows, rec.feature], rq.bin, rq.default_left)
            vleft = left_of_codes(self.valid_codes[:, rec.feature], rq.bin, rq.default_left)
            out.append((len(self.records) - 1, left, vleft))
        return out

    def add_record(self, feature: int, b: int, default_left: bool) -> Record:
        edges = self.bins.edges[feature]
        thr = float(edges[b]) if b < len(edges) else float("inf")
        rec = Record(feature, thr, default_left, self.t)
        self.records.append(rec)
        return rec


def left_of_codes(codes: np.ndarray, b: int, default_left: bool) -> np.ndarray:
    """Rows going left at bin ``b`` (missing ones follow ``default_left``)."""
    return np.where(codes == MISSING, default_left, codes <= b)


@dataclass
class PlainModel:
    """The reference model: the ensemble plus every party's split records."""

    ensemble: Ensemble
    records: list[list[Record]]
    params: SBTParams

    def predict_margin(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        n = blocks[0].shape[0]
        left = {
            (k, r): rec.goes_left(blocks[k])
            for k, recs in enumerate(self.records)
            for r, rec in enumerate(recs)
        }
        per_tree = [left for _ in self.ensemble.trees]
        return self.ensemble.margin(per_tree, n)

    def predict(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        m = self.predict_margin(blocks)
        return 1 / (1 + np.exp(-m)) if self.params.objective == Objective.BINARY else m


def fit_plain(
    blocks: Sequence[np.ndarray],
    y: np.ndarray,
    p: SBTParams,
    valid_blocks: Sequence[np.ndarray] | None = None,
    valid_y: np.ndarray | None = None,
) -> PlainModel:
    """Train on the vertically split ``blocks`` (block 0 = the label holder's) in the clear."""
    sides = []
    for k, x in enumerate(blocks):
        bins = fit_bins(x, p.max_bin)
        vx = valid_blocks[k] if valid_blocks is not None else x[:0]
        sides.append(PlainSide(k, bins, apply_bins(vx, bins.edges), p))
    y = np.asarray(y, dtype=np.float64)
    vy = None if valid_y is None else np.asarray(valid_y, dtype=np.float64)
    w = sample_weights(y, p.class_weight, "secureboost.class_weight")
    ens, keep = boost(list(sides), y, w, p, valid_y=vy)
    records = [[r for r in s.records if r.tree < keep] for s in sides]
    return PlainModel(ens, records, p)
