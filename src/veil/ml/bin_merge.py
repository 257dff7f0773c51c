"""Merging adjacent bins on per-bin counts only, and WOE/IV from counts.

Pure functions on count arrays (no edges, no values), so the label holder can
run them on a partner's bins. Each returns *group starts*: the index of the
first fine bin of every merged bin. Chi-merge follows Kerber (1992); monotonic
merging is pool-adjacent-violators on the event rate; WOE/IV follow Siddiqi,
*Credit Risk Scorecards* (2006), ch. 6, with FATE's 0.5 adjustment of empty cells.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
IntArr = npt.NDArray[np.int64]

WOE_ADJUSTMENT = 0.5
"""Added to empty event / non-event counts so WOE stays finite (FATE's default)."""


def merge_small(counts: npt.ArrayLike, min_size: int) -> IntArr:
    """Group starts after merging every bin under ``min_size`` rows into a neighbour.

    The smallest offending bin is merged first, into its smaller neighbour, until
    all bins reach ``min_size`` or one bin is left.
    """
    groups = [int(c) for c in np.asarray(counts)]
    starts = list(range(len(groups)))
    while len(groups) > 1:
        i = int(np.argmin(groups))
        if groups[i] >= min_size:
            break
        if i == 0:
            j = 1
        elif i == len(groups) - 1:
            j = i - 1
        else:
            j = i - 1 if groups[i - 1] <= groups[i + 1] else i + 1
        a, b = min(i, j), max(i, j)
        groups[a] += groups[b]
        del groups[b], starts[b]
    return np.asarray(starts, dtype=np.int64)


def woe_iv(events: npt.ArrayLike, counts: npt.ArrayLike) -> tuple[FloatArray, float]:
    """WOE per bin and IV, with :data:`WOE_ADJUSTMENT` for empty cells."""
    ev = np.asarray(events, dtype=np.float64)
    ne = np.asarray(counts, dtype=np.float64) - ev
    tot_e, tot_n = ev.sum(), ne.sum()
    if tot_e <= 0 or tot_n <= 0:
        raise ConfigError(
            "label", "has only one class on the fitted rows", "WOE needs both 0 and 1 labels"
        )
    empty = (ev == 0) | (ne == 0)
    ev_adj = np.where(empty, ev + WOE_ADJUSTMENT, ev)
    ne_adj = np.where(empty, ne + WOE_ADJUSTMENT, ne)
    de, dn = ev_adj / tot_e, ne_adj / tot_n
    woe = np.log(de / dn)
    return woe, float(np.sum((de - dn) * woe))


def _chi2(ev: FloatArray, tot: FloatArray, i: int) -> float:
    """Chi-square statistic of the 2x2 table of bins ``i`` and ``i + 1``."""
    e = ev[i : i + 2]
    n = tot[i : i + 2] - e
    table = np.stack([e, n])
    col = table.sum(axis=0)
    row = table.sum(axis=1)
    total = table.sum()
    if total == 0:
        return 0.0
    expected = np.outer(row, col) / total
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(expected > 0, (table - expected) ** 2 / expected, 0.0)
    return float(terms.sum())


def _merge_pairs(
    events: FloatArray,
    totals: FloatArray,
    starts: list[int],
    max_bins: int,
    threshold: float | None,
) -> list[int]:
    """Merge the adjacent pair with the lowest chi-square until done (in place on lists)."""
    ev, tot = list(events), list(totals)
    while len(ev) > 1:
        chis = [_chi2(np.asarray(ev), np.asarray(tot), i) for i in range(len(ev) - 1)]
        i = int(np.argmin(chis))
        if len(ev) <= max_bins and (threshold is None or chis[i] >= threshold):
            break
        ev[i] += ev[i + 1]
        tot[i] += tot[i + 1]
        del ev[i + 1], tot[i + 1], starts[i + 1]
    return starts


def chi_merge(
    events: npt.ArrayLike, counts: npt.ArrayLike, max_bins: int, threshold: float | None = None
) -> IntArr:
    """Group starts from chi-merge: merge the most similar adjacent bins first."""
    ev = np.asarray(events, dtype=np.float64)
    tot = np.asarray(counts, dtype=np.float64)
    return np.asarray(_merge_pairs(ev, tot, list(range(len(ev))), max_bins, threshold), np.int64)


def _pav(ev: FloatArray, tot: FloatArray, increasing: bool) -> list[int]:
    """Pool adjacent violators: group starts making the event rate monotone."""
    blocks: list[list[float]] = []  # [events, total, start]
    for i in range(len(ev)):
        blocks.append([ev[i], tot[i], i])
        while len(blocks) > 1:
            (e1, t1, _), (e2, t2, _) = blocks[-2], blocks[-1]
            r1 = e1 / t1 if t1 else 0.0
            r2 = e2 / t2 if t2 else 0.0
            if (r2 >= r1) if increasing else (r2 <= r1):
                break
            blocks[-2][0] += e2
            blocks[-2][1] += t2
            blocks.pop()
    return [int(b[2]) for b in blocks]


def monotonic_merge(events: npt.ArrayLike, counts: npt.ArrayLike, max_bins: int) -> IntArr:
    """Group starts making the event rate (hence WOE) monotone, at most ``max_bins``.

    Both directions are tried; the one keeping more information (IV) wins.
    Further merging down to ``max_bins`` uses chi-merge, which keeps monotonicity.
    """
    ev = np.asarray(events, dtype=np.float64)
    tot = np.asarray(counts, dtype=np.float64)
    best: tuple[float, list[int]] | None = None
    for increasing in (True, False):
        starts = _pav(ev, tot, increasing)
        s_arr = np.asarray(starts, dtype=np.int64)
        g_ev, g_tot = np.add.reduceat(ev, s_arr), np.add.reduceat(tot, s_arr)
        starts = _merge_pairs(g_ev, g_tot, starts, max_bins, None)
        s_arr = np.asarray(starts, dtype=np.int64)
        _, iv = woe_iv(np.add.reduceat(ev, s_arr), np.add.reduceat(tot, s_arr))
        if best is None or iv > best[0]:
            best = (iv, starts)
    assert best is not None
    return np.asarray(best[1], dtype=np.int64)
