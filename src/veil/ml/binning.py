"""Per-feature binning for credit scoring, in plaintext on one party.

Two stages, so the label holder and a partner run the same code:

1. :func:`fine_bins` needs no labels: quantile or equal-width cut points, bins
   with fewer than ``min_bin_size`` rows merged into a neighbour, missing values
   in a bin of their own (or, if there are too few of them, in the largest bin).
2. :func:`finish_bins` takes the event count of every fine bin and, for the
   optimal methods, merges adjacent bins by chi-merge [Kerber 1992] or into a
   WOE-monotone sequence (pool-adjacent-violators), then attaches WOE and IV
   [Siddiqi, *Credit Risk Scorecards*, 2006, ch. 6].

The merging functions (:mod:`veil.ml.bin_merge`) work on count arrays only and
return *group starts* (indices of the first fine bin of each final bin), so the
label holder can merge a partner's bins knowing their counts but not their edges
or values.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError
from veil.ml.bin_merge import (
    WOE_ADJUSTMENT,
    FloatArray,
    IntArr,
    chi_merge,
    merge_small,
    monotonic_merge,
    woe_iv,
)


class BinMethod(StrEnum):
    """How cut points are chosen."""

    QUANTILE = "quantile"
    EQUAL_WIDTH = "equal_width"
    CHI_MERGE = "chi_merge"
    MONOTONIC = "monotonic"

    @property
    def needs_labels(self) -> bool:
        """Whether the final bins depend on event counts (optimal binning)."""
        return self in (BinMethod.CHI_MERGE, BinMethod.MONOTONIC)


@dataclass(frozen=True)
class BinningOptions:
    """Options of a binning run (shared by every party).

    ``n_bins`` is the number of bins for quantile / equal-width and the maximum
    for the optimal methods, which start from ``fine_bins`` quantile bins.
    ``chi_threshold`` stops chi-merge early once every adjacent pair differs at
    that chi-square value (3.841 = 95 % with one degree of freedom); ``None``
    merges down to ``n_bins``.
    """

    method: BinMethod = BinMethod.QUANTILE
    n_bins: int = 10
    fine_bins: int = 20
    min_bin_size: int = 50
    chi_threshold: float | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "method", BinMethod(self.method))
        except ValueError:
            raise ConfigError(
                "binning.method",
                f"unknown method '{self.method}'",
                f"use one of {[m.value for m in BinMethod]}",
            ) from None
        if self.n_bins < 2:
            raise ConfigError("binning.n_bins", f"must be >= 2, got {self.n_bins}", "use 5..20")
        if self.fine_bins < self.n_bins:
            raise ConfigError(
                "binning.fine_bins",
                f"{self.fine_bins} is fewer than n_bins={self.n_bins}",
                "set fine_bins >= n_bins (e.g. 2 * n_bins)",
            )
        if self.min_bin_size < 1:
            raise ConfigError(
                "binning.min_bin_size", f"must be >= 1, got {self.min_bin_size}", "use e.g. 50"
            )
        if self.chi_threshold is not None and self.chi_threshold <= 0:
            raise ConfigError(
                "binning.chi_threshold", "must be positive", "use 3.841 (95 %) or leave unset"
            )

    @property
    def initial_bins(self) -> int:
        """Bins cut before any label-driven merging."""
        return self.fine_bins if self.method.needs_labels else self.n_bins


@dataclass(frozen=True)
class FineBins:
    """Label-free bins of one feature: ``edges`` are interior cut points.

    Value ``x`` falls in bin ``searchsorted(edges, x, 'left')`` (right-closed
    intervals); missing values fall in ``missing_bin``. If ``has_missing_bin``
    the last bin holds only missing values.
    """

    name: str
    edges: FloatArray
    counts: IntArr
    has_missing_bin: bool
    missing_bin: int

    @property
    def n_bins(self) -> int:
        return len(self.counts)

    def transform(self, values: npt.ArrayLike) -> IntArr:
        """Bin index of every value (missing -> ``missing_bin``)."""
        x = np.asarray(values, dtype=np.float64)
        idx = np.searchsorted(self.edges, x, side="left").astype(np.int64)
        idx[np.isnan(x)] = self.missing_bin
        return idx


@dataclass(frozen=True)
class Bins(FineBins):
    """Final bins of one feature with their label statistics.

    ``events`` counts label 1 per bin on the rows the bins were fitted on (the
    label holder knows them; a partner's own :class:`Bins` has ``None``);
    ``woe`` is ln(share of events / share of non-events), so a positive WOE
    means a riskier bin; ``iv`` is the information value. A partner has ``woe``
    and ``iv`` only if the label holder sent them back.
    """

    events: IntArr | None = None
    woe: FloatArray | None = None
    iv: float | None = None

    def woe_transform(self, values: npt.ArrayLike) -> FloatArray:
        """WOE of the bin of every value."""
        if self.woe is None:
            raise ConfigError(
                f"bins of '{self.name}'",
                "have no WOE values",
                "ask the label holder to share WOE (share_woe: true)",
            )
        return self.woe[self.transform(values)]

    def labels(self) -> list[str]:
        """Readable interval of every bin, e.g. ``(-inf, 1.5]``, ``missing``."""
        cuts = [-np.inf, *self.edges.tolist(), np.inf]
        out = [f"({cuts[i]:.6g}, {cuts[i + 1]:.6g}]" for i in range(len(cuts) - 1)]
        if self.has_missing_bin:
            out.append("missing")
        elif self.missing_bin >= 0 and len(out) > self.missing_bin:
            out[self.missing_bin] += " + missing"
        return out


# -- label-free stage -------------------------------------------------------
def check_feature(name: str, values: npt.ArrayLike) -> FloatArray:
    """``values`` as float64, rejecting all-missing and constant columns by name."""
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(
            f"column '{name}'", "is not numeric", "encode categories as numbers first"
        ) from None
    if x.ndim != 1:
        raise ConfigError(f"column '{name}'", f"must be 1-D, got shape {x.shape}")
    present = x[~np.isnan(x)]
    if present.size == 0:
        raise ConfigError(f"column '{name}'", "is missing on every row", "drop the column")
    if np.all(present == present[0]):
        raise ConfigError(
            f"column '{name}'",
            f"is constant ({present[0]:g}) and carries no information",
            "drop the column",
        )
    return x


def _initial_edges(x: FloatArray, method: BinMethod, n: int) -> FloatArray:
    lo, hi = float(x.min()), float(x.max())
    if method is BinMethod.EQUAL_WIDTH:
        edges = np.linspace(lo, hi, n + 1)[1:-1]
    else:
        edges = np.quantile(x, np.linspace(0, 1, n + 1)[1:-1], method="linear")
    edges = np.unique(edges)
    return edges[(edges >= lo) & (edges < hi)]


def _apply_starts(edges: FloatArray, counts: IntArr, starts: IntArr) -> tuple[FloatArray, IntArr]:
    """Coarse edges and counts when fine bins are grouped at ``starts``."""
    new_edges = edges[starts[1:] - 1] if len(starts) > 1 else edges[:0]
    return new_edges, np.add.reduceat(counts, starts).astype(np.int64)


def fine_bins(name: str, values: npt.ArrayLike, opts: BinningOptions) -> FineBins:
    """Label-free bins of one feature (see the module docstring)."""
    x = check_feature(name, values)
    missing = np.isnan(x)
    present = x[~missing]
    edges = _initial_edges(present, opts.method, opts.initial_bins)
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    edges, counts = _apply_starts(edges, counts, merge_small(counts, opts.min_bin_size))
    n_missing = int(missing.sum())
    if n_missing >= opts.min_bin_size:
        counts = np.append(counts, n_missing)
        return FineBins(name, edges, counts.astype(np.int64), True, len(counts) - 1)
    biggest = int(np.argmax(counts))
    counts[biggest] += n_missing
    return FineBins(name, edges, counts.astype(np.int64), False, biggest if n_missing else -1)


# -- label-driven stage ------------------------------------------------------
def optimal_starts(
    counts: npt.ArrayLike, has_missing_bin: bool, events: npt.ArrayLike, opts: BinningOptions
) -> IntArr | None:
    """Group starts the label holder chooses for bins with these counts (None = keep).

    Needs only per-bin row and event counts, never edges or values. A dedicated
    missing bin (the last one) is never merged with value bins.
    """
    if not opts.method.needs_labels:
        return None
    ev = np.asarray(events, dtype=np.float64)
    tot = np.asarray(counts, dtype=np.float64)
    k = len(tot) - 1 if has_missing_bin else len(tot)
    max_value_bins = max(opts.n_bins - 1 if has_missing_bin else opts.n_bins, 1)
    if opts.method is BinMethod.CHI_MERGE:
        starts = chi_merge(ev[:k], tot[:k], max_value_bins, opts.chi_threshold)
    else:
        starts = monotonic_merge(ev[:k], tot[:k], max_value_bins)
    if has_missing_bin:
        starts = np.append(starts, k)
    return starts


def regroup(fine: FineBins, starts: npt.ArrayLike | None) -> FineBins:
    """``fine`` with its bins grouped at ``starts`` (validated: it may come off the wire)."""
    if starts is None:
        return fine
    s = np.asarray(starts, dtype=np.int64)
    if s.ndim != 1 or len(s) == 0 or s[0] != 0 or np.any(np.diff(s) <= 0) or s[-1] >= fine.n_bins:
        raise ConfigError(f"bins of '{fine.name}'", "invalid group starts", "a protocol bug")
    k = fine.n_bins - 1 if fine.has_missing_bin else fine.n_bins
    value_starts = s[s < k]
    if fine.has_missing_bin and (len(value_starts) == len(s) or s[-1] != k):
        raise ConfigError(f"bins of '{fine.name}'", "missing bin merged with values", "a bug")
    edges, counts = _apply_starts(fine.edges, fine.counts[:k], value_starts)
    if fine.has_missing_bin:
        counts = np.append(counts, fine.counts[k])
        missing_bin = len(counts) - 1
    elif fine.missing_bin >= 0:
        missing_bin = int(np.searchsorted(value_starts, fine.missing_bin, side="right") - 1)
    else:
        missing_bin = -1
    return FineBins(fine.name, edges, counts.astype(np.int64), fine.has_missing_bin, missing_bin)


def with_stats(fine: FineBins, events: npt.ArrayLike) -> Bins:
    """Final :class:`Bins`: ``fine`` plus its per-bin event counts, WOE and IV."""
    ev = np.rint(np.asarray(events, dtype=np.float64)).astype(np.int64)
    if ev.shape != fine.counts.shape or np.any(ev < 0) or np.any(ev > fine.counts):
        raise ConfigError(f"bins of '{fine.name}'", "event counts do not fit the bins", "a bug")
    woe, iv = woe_iv(ev, fine.counts)
    return Bins(
        fine.name,
        fine.edges,
        fine.counts,
        fine.has_missing_bin,
        fine.missing_bin,
        events=ev,
        woe=woe,
        iv=iv,
    )


def finish_bins(fine: FineBins, fine_events: npt.ArrayLike, opts: BinningOptions) -> Bins:
    """Apply optimal merging (if the method asks for it) and attach WOE/IV."""
    ev = np.asarray(fine_events, dtype=np.float64)
    starts = optimal_starts(fine.counts, fine.has_missing_bin, ev, opts)
    final = regroup(fine, starts)
    if starts is not None:
        ev = np.add.reduceat(ev, starts)
    return with_stats(final, ev)


def bin_feature(name: str, values: npt.ArrayLike, y: npt.ArrayLike, opts: BinningOptions) -> Bins:
    """Plaintext binning of one feature with its labels (the label holder's own columns)."""
    fine = fine_bins(name, values, opts)
    idx = fine.transform(values)
    ev = np.bincount(idx, weights=np.asarray(y, dtype=np.float64), minlength=fine.n_bins)
    return finish_bins(fine, ev, opts)


__all__ = [
    "WOE_ADJUSTMENT",
    "BinMethod",
    "BinningOptions",
    "Bins",
    "FineBins",
    "FloatArray",
    "IntArr",
    "bin_feature",
    "check_feature",
    "chi_merge",
    "fine_bins",
    "finish_bins",
    "merge_small",
    "monotonic_merge",
    "optimal_starts",
    "regroup",
    "with_stats",
    "woe_iv",
]
