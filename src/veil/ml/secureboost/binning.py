"""Quantile pre-binning of one party's features, done once before training.

Bin ``b`` of feature ``j`` holds values ``edges[j][b-1] < x <= edges[j][b]``;
splitting "at bin k" sends ``x <= edges[j][k]`` left, so routing raw values at
prediction time gives the same partition as routing bin codes during training.
Missing values (NaN) get code -1 and follow the node's learned default direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from veil.errors import ConfigError

MISSING = -1


@dataclass(frozen=True)
class Bins:
    """Per-feature cut points and the binned matrix (int16, -1 = missing)."""

    edges: tuple[np.ndarray, ...]
    codes: np.ndarray

    @property
    def n_bins(self) -> np.ndarray:
        """Bins per feature (1 for a constant column: it can never split)."""
        return np.array([len(e) + 1 for e in self.edges], dtype=np.int64)


def as_features(x: object, names: Sequence[str], who: str) -> np.ndarray:
    """``x`` as a float64 (rows, features) matrix, or a ConfigError naming the bad column."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ConfigError(f"{who}.features", f"need a 2-D table, got {arr.ndim}-D", "")
    if arr.shape[1] != len(names):
        raise ConfigError(
            f"{who}.feature_names", f"{len(names)} names for {arr.shape[1]} columns", ""
        )
    if arr.dtype.kind not in "biuf":
        for j, name in enumerate(names):
            try:
                arr[:, j].astype(np.float64)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{who}.features.{name}",
                    "is not numeric",
                    "encode categories as numbers (one-hot or WOE) before training",
                ) from None
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if np.isinf(out).any():
        j = int(np.where(np.isinf(out).any(axis=0))[0][0])
        raise ConfigError(f"{who}.features.{names[j]}", "holds infinite values", "clip them")
    for j, name in enumerate(names):
        if out.shape[0] and np.isnan(out[:, j]).all():
            raise ConfigError(
                f"{who}.features.{name}", "is missing in every row", "drop the column"
            )
    return out


def fit_bins(x: np.ndarray, max_bin: int) -> Bins:
    """Quantile cut points (at most ``max_bin`` bins per feature) and the codes of ``x``."""
    qs = np.linspace(0.0, 1.0, max_bin + 1)[1:-1]
    edges = []
    for j in range(x.shape[1]):
        col = x[:, j]
        col = col[~np.isnan(col)]
        cuts = np.unique(np.quantile(col, qs, method="lower")) if col.size else np.empty(0)
        # the top cut would leave the last bin empty: x <= max always holds
        edges.append(cuts[cuts < col.max()] if col.size else cuts)
    return Bins(tuple(edges), apply_bins(x, edges))


def apply_bins(x: np.ndarray, edges: Sequence[np.ndarray]) -> np.ndarray:
    """Bin codes of ``x`` under existing cut points (-1 where missing)."""
    codes = np.empty(x.shape, dtype=np.int16)
    for j, e in enumerate(edges):
        col = x[:, j]
        c = np.searchsorted(e, col, side="left").astype(np.int16)
        c[np.isnan(col)] = MISSING
        codes[:, j] = c
    return codes
