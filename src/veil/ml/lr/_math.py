"""Plaintext arithmetic of vertical LR that every party runs on its own data.

Kept apart from the message flow so that the protocol modules read as the protocol,
and so that tests can run the same update rule in the clear (:func:`taylor_fit_plain`)
and compare the federated result with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError
from veil.ml.labels import sample_weights
from veil.ml.lr._options import LROptions, Penalty

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]


def check_features(X: npt.ArrayLike, names: Sequence[str], where: str) -> FloatArray:
    """Validate a party's feature matrix: 2-D, finite, no all-missing column."""
    A = np.asarray(X, dtype=np.float64)
    if A.ndim != 2:
        raise ConfigError(f"{where}.features", f"expected a 2-D table, got shape {A.shape}")
    if A.shape[1] != len(names):
        raise ConfigError(
            f"{where}.feature_names", f"{len(names)} names for {A.shape[1]} feature columns"
        )
    if A.shape[0] == 0:
        raise ConfigError(f"{where}.rows", "no rows to train on", "check the PSI/split output")
    nan = np.isnan(A)
    for j, name in enumerate(names):
        if nan[:, j].all():
            raise ConfigError(f"{where}.{name}", "column is entirely missing", "drop the column")
        if nan[:, j].any():
            raise ConfigError(
                f"{where}.{name}",
                f"{int(nan[:, j].sum())} missing values",
                "impute them or WOE-transform the column first (binning step)",
            )
    if not np.isfinite(A).all():
        raise ConfigError(f"{where}.features", "contains infinite values")
    return A


def fit_scaling(X: FloatArray, names: Sequence[str], where: str) -> tuple[FloatArray, FloatArray]:
    """Column means and standard deviations; a constant column is an error."""
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    for j, name in enumerate(names):
        if not std[j] > 1e-12:
            raise ConfigError(
                f"{where}.{name}", "column is constant on the training rows", "drop the column"
            )
    return mean, std


def prepare_block(
    X: npt.ArrayLike, names: Sequence[str], opts: LROptions, where: str
) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
    """Check, standardise and clip a party's training block; return it with its scaling."""
    A = check_features(X, names, where)
    mean, std = fit_scaling(A, names, where)
    if not opts.standardize:
        return clip_block(A, opts.clip), None, None
    return clip_block((A - mean) / std, opts.clip), mean, std


def clip_block(X: FloatArray, clip: float) -> FloatArray:
    """Winsorise to [-clip, clip]; 0 leaves ``X`` unchanged."""
    return np.clip(X, -clip, clip) if clip > 0 else X


def batches(n: int, batch_size: int, epoch: int, seed: int, min_rows: int) -> list[IndexArray]:
    """Row indices of each mini-batch of ``epoch``; every party derives the same.

    The rows are shuffled by ``seed`` (a public choice); a last batch of fewer than
    ``min_rows`` rows is merged into the one before it, never used alone: a party learns
    its batch gradient, and a batch with no more rows than columns gives its rows away.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n)
    size = n if batch_size <= 0 else batch_size
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] < min_rows:
        starts.pop()
    ends = [*starts[1:], n]
    return [np.sort(order[a:b]) for a, b in zip(starts, ends, strict=True)]


def fixed_partition(n: int, batch_size: int, seed: int, min_rows: int) -> list[IndexArray]:
    """The batches of a run whose partition stays fixed (epoch 0's batches), numbered by
    position: what a protocol that prepares per-batch statistics once
    (:mod:`veil.ml.lr._gram`) builds them for."""
    return batches(n, batch_size, 0, seed, min_rows)


def fixed_batches(
    n: int, batch_size: int, epoch: int, seed: int, min_rows: int
) -> list[tuple[int, IndexArray]]:
    """``(batch number, row indices)`` of :func:`fixed_partition`, visited in a fresh
    order each epoch."""
    parts = fixed_partition(n, batch_size, seed, min_rows)
    order = np.random.default_rng([seed, epoch, 1]).permutation(len(parts))
    return [(b, parts[b]) for b in order.tolist()]


def step(
    w: FloatArray, grad: FloatArray, lr: float, opts: LROptions, n_penalised: int
) -> FloatArray:
    """One (proximal) gradient step; the first ``n_penalised`` entries carry the penalty.

    ``grad`` is the mean gradient of the data term over the batch.
    """
    g = grad.copy()
    if opts.penalty is Penalty.L2:
        g[:n_penalised] += opts.alpha * w[:n_penalised]
    new = w - lr * g
    if opts.penalty is Penalty.L1 and opts.alpha > 0:
        head = new[:n_penalised]
        new[:n_penalised] = np.sign(head) * np.maximum(np.abs(head) - lr * opts.alpha, 0.0)
    return new


def sigmoid(z: FloatArray) -> FloatArray:
    """Logistic function, stable for large |z|."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)


def taylor_fit_plain(
    Xs: Sequence[FloatArray],
    y: FloatArray,
    opts: LROptions,
    *,
    min_rows: int,
    fixed: bool = False,
) -> list[FloatArray]:
    """The federated algorithm run in the clear on all parties' (scaled) columns.

    ``Xs[0]`` is the label holder's block (with its intercept column last if
    ``fit_intercept``). Returns each block's coefficients. Batches are drawn from
    ``opts.seed`` with short last batches merged below ``min_rows``; ``fixed``: the
    batches of :func:`fixed_batches` (the ``gram`` protocol), else :func:`batches`.
    Tests compare the encrypted run with this; it never runs inside a protocol.
    """
    ws = [np.zeros(X.shape[1]) for X in Xs]
    sw = sample_weights(y, opts.class_weight)
    n = len(y)
    for epoch in range(opts.epochs):
        lr = opts.learning_rate_at(epoch)
        if fixed:
            order = [i for _, i in fixed_batches(n, opts.batch_size, epoch, opts.seed, min_rows)]
        else:
            order = batches(n, opts.batch_size, epoch, opts.seed, min_rows)
        for idx in order:
            z = sum(X[idx] @ w for X, w in zip(Xs, ws, strict=True))
            d = sw[idx] * (0.25 * z + 0.5 - y[idx])
            for p, X in enumerate(Xs):
                pen = X.shape[1] - (1 if p == 0 and opts.fit_intercept else 0)
                ws[p] = step(ws[p], X[idx].T @ d / len(idx), lr, opts, pen)
    return ws
