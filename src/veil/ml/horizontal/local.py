"""What one bank does on its own rows: check them, hold out a validation share,
train locally from the global model (FedAvg/FedProx), score. Also the central and
local-only baselines (the same trainer on pooled or one bank's rows).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from veil.errors import ConfigError
from veil.ml.horizontal.models import FloatArray, ModelSpec, loss_and_grad, predict
from veil.ml.horizontal.options import FedAvgOptions
from veil.ml.labels import check_labels, sample_weights

Rows = tuple[FloatArray, FloatArray, FloatArray]
"""(X, y, row weights)."""


@dataclass(frozen=True)
class BankData:
    """One bank's training table: features (columns in order), 0/1 labels, row ids."""

    X: FloatArray
    y: FloatArray
    columns: tuple[str, ...]
    kinds: tuple[str, ...]
    ids: tuple[str, ...]

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, label: str, *, id_column: str | None = None, who: str = "bank"
    ) -> BankData:
        """Features are every column but the id and label; each must be numeric and
        complete, the label 0/1 with both classes. Errors name ``who`` and the column."""
        if label not in frame.columns:
            raise ConfigError(f"parties.{who}.label", f"no column '{label}'", "name the 0/1 label")
        skip = {label, id_column}
        cols = [str(c) for c in frame.columns if c not in skip]
        if not cols:
            raise ConfigError(f"parties.{who}.data", "has no feature columns", "add features")
        X, kinds = feature_matrix(frame, cols, who)
        y = check_labels(frame[label].to_numpy(), f"parties.{who}.label '{label}'")
        ids = frame[id_column].astype(str) if id_column else pd.Series(range(len(frame)))
        return cls(X, y.astype(np.float64), tuple(cols), kinds, tuple(ids.astype(str)))

    def reorder(self, columns: Sequence[str]) -> BankData:
        """The same rows with the columns in ``columns`` order (same set)."""
        idx = [self.columns.index(c) for c in columns]
        kinds = tuple(self.kinds[i] for i in idx)
        return BankData(self.X[:, idx], self.y, tuple(columns), kinds, self.ids)


def kind_of(series: pd.Series) -> str:
    """The coarse type of a column compared across banks: integer, float or bool."""
    k = series.dtype.kind
    return {"i": "integer", "u": "integer", "f": "float", "b": "bool"}.get(k, str(series.dtype))


def feature_matrix(
    frame: pd.DataFrame, columns: Sequence[str], who: str
) -> tuple[FloatArray, tuple[str, ...]]:
    """``columns`` of ``frame`` as float64, or a ConfigError naming ``who`` and the column
    (missing, not numeric, NaN or infinite values)."""
    out = np.empty((len(frame), len(columns)))
    kinds = []
    for j, c in enumerate(columns):
        if c not in frame.columns:
            raise ConfigError(f"parties.{who}", f"column '{c}' is missing", "use the same columns")
        s = frame[c]
        kind = kind_of(s)
        if kind not in ("integer", "float", "bool"):
            raise ConfigError(
                f"parties.{who}.data", f"column '{c}' is not numeric ({s.dtype})", "encode it"
            )
        v = s.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(v)
        if bad.any():
            raise ConfigError(
                f"parties.{who}.data",
                f"column '{c}' has {int(bad.sum())} missing or infinite value(s), first at "
                f"row {int(np.flatnonzero(bad)[0]) + 1}",
                "fill or drop them before the job",
            )
        out[:, j] = v
        kinds.append(kind)
    return out, tuple(kinds)


def holdout_mask(y: FloatArray, share: float, seed: int, who: str) -> npt.NDArray[np.bool_]:
    """A stratified random ``share`` of rows to hold out (True), the same for a given
    bank name and seed."""
    mask = np.zeros(y.size, dtype=bool)
    if share <= 0:
        return mask
    rng = np.random.default_rng([seed, zlib.crc32(who.encode())])
    for cls in (0.0, 1.0):
        rows = np.flatnonzero(y == cls)
        k = round(share * rows.size)
        mask[rng.choice(rows, size=k, replace=False)] = True
    return mask


def row_weights(y: FloatArray, opts: FedAvgOptions) -> FloatArray:
    """Per-row weights from ``class_weight`` (``balanced`` uses this bank's own rates)."""
    return sample_weights(y, opts.class_weight)


def local_train(
    spec: ModelSpec,
    theta: FloatArray,
    data: Rows,
    opts: FedAvgOptions,
    rng: np.random.Generator,
    *,
    anchor: FloatArray | None = None,
) -> tuple[FloatArray, float]:
    """``local_epochs`` of mini-batch SGD from ``theta``; FedProx pulls toward
    ``anchor`` (the global model) with ``fedprox_mu``. ``data`` is (X, y, row weights).
    Returns the new parameters and the mean training loss seen."""
    X, y, w = data
    theta = theta.copy()
    n = y.size
    losses = []
    for _ in range(opts.local_epochs):
        perm = rng.permutation(n)
        for start in range(0, n, opts.batch_size):
            idx = perm[start : start + opts.batch_size]
            loss, g = loss_and_grad(
                spec, theta, X[idx], y[idx], w[idx], focal_gamma=opts.focal_gamma
            )
            if opts.fedprox_mu > 0 and anchor is not None:
                g = g + opts.fedprox_mu * (theta - anchor)
            theta -= opts.learning_rate * g
            losses.append(loss)
    return theta, float(np.mean(losses)) if losses else 0.0


def weighted_loss(
    spec: ModelSpec,
    theta: FloatArray,
    data: tuple[FloatArray, FloatArray, FloatArray],
    gamma: float,
) -> tuple[float, float]:
    """(sum of weighted row losses, sum of weights) over ``data`` = (X, y, w): additive
    across banks."""
    X, y, w = data
    if y.size == 0:
        return 0.0, 0.0
    loss, _ = loss_and_grad(spec, theta, X, y, w, focal_gamma=gamma)
    total = float(w.sum())
    return loss * total, total


def fit_central(
    X: FloatArray, y: FloatArray, opts: FedAvgOptions
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The baseline: the same model trained on one table (pooled or one bank's rows)
    for ``rounds * local_epochs`` epochs with the same step and batches. Returns
    (parameters, feature means, feature scales) to score with :func:`score`."""
    check_labels(y, "y")
    mean, scale = (X.mean(axis=0), X.std(axis=0)) if opts.standardize else (None, None)
    mean = np.zeros(X.shape[1]) if mean is None else mean
    scale = np.ones(X.shape[1]) if scale is None else np.where(scale > 0, scale, 1.0)
    spec = opts.spec
    theta = spec.init(X.shape[1], opts.seed)
    rng = np.random.default_rng(opts.seed)
    Z = (X - mean) / scale
    w = row_weights(y, opts)
    for _ in range(opts.rounds):
        theta, _ = local_train(spec, theta, (Z, y, w), opts, rng)
    return theta, mean, scale


def score(
    spec: ModelSpec, theta: FloatArray, mean: FloatArray, scale: FloatArray, X: FloatArray
) -> FloatArray:
    """Probabilities of label 1 for raw features ``X``."""
    return predict(spec, theta, (X - mean) / scale)
