"""Plaintext arithmetic of vertical LR that every party runs on its own data.

Kept apart from the message flow so that the protocol module reads as the
protocol, and so that tests can run the same update rule in the clear
(:func:`taylor_fit_plain`) and compare the federated result with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from veil.errors import ConfigError
from veil.ml.lr_options import LROptions, Penalty


def check_features(X: np.ndarray, names: Sequence[str], where: str) -> np.ndarray:
    """Validate a party's feature matrix: 2-D, finite, no all-missing column."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ConfigError(f"{where}.features", f"expected a 2-D table, got shape {X.shape}")
    if X.shape[1] != len(names):
        raise ConfigError(
            f"{where}.feature_names", f"{len(names)} names for {X.shape[1]} feature columns"
        )
    if X.shape[0] == 0:
        raise ConfigError(f"{where}.rows", "no rows to train on", "check the PSI/split output")
    nan = np.isnan(X)
    for j, name in enumerate(names):
        if nan[:, j].all():
            raise ConfigError(f"{where}.{name}", "column is entirely missing", "drop the column")
        if nan[:, j].any():
            raise ConfigError(
                f"{where}.{name}",
                f"{int(nan[:, j].sum())} missing values",
                "impute them or WOE-transform the column first (binning step)",
            )
    if not np.isfinite(X).all():
        raise ConfigError(f"{where}.features", "contains infinite values")
    return X


def check_labels(y: np.ndarray, where: str) -> np.ndarray:
    """Labels must be 0/1 with both classes present."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ConfigError(f"{where}.label", f"expected one label column, got shape {y.shape}")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ConfigError(f"{where}.label", "has missing values", "drop unlabelled rows")
    vals = set(np.unique(y).tolist())
    if not vals <= {0, 1}:
        shown = sorted(vals)[:5]
        raise ConfigError(
            f"{where}.label", f"is not binary 0/1 (values {shown})", "encode it as 0/1"
        )
    if len(vals) < 2:
        raise ConfigError(f"{where}.label", "has a single class", "both classes are needed")
    return y.astype(np.float64)


def fit_scaling(X: np.ndarray, names: Sequence[str], where: str) -> tuple[np.ndarray, np.ndarray]:
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
    X: np.ndarray, names: Sequence[str], opts: LROptions, where: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Check, standardise and clip a party's training block; return it with its scaling."""
    X = check_features(X, names, where)
    mean, std = fit_scaling(X, names, where)
    if not opts.standardize:
        return clip_block(X, opts.clip), None, None
    return clip_block((X - mean) / std, opts.clip), mean, std


def clip_block(X: np.ndarray, clip: float) -> np.ndarray:
    """Winsorise to [-clip, clip]; 0 leaves ``X`` unchanged."""
    return np.clip(X, -clip, clip) if clip > 0 else X


def sample_weights(y: np.ndarray, class_weight: str | Mapping[int, float] | None) -> np.ndarray:
    """Per-row weights from ``class_weight`` (scikit-learn's 'balanced' rule)."""
    if class_weight is None:
        return np.ones_like(y)
    if class_weight == "balanced":
        n1 = float(y.sum())
        n0 = float(len(y) - n1)
        w = {0: len(y) / (2 * n0), 1: len(y) / (2 * n1)}
    else:
        assert isinstance(class_weight, Mapping)
        w = {0: float(class_weight[0]), 1: float(class_weight[1])}
    return np.where(y > 0.5, w[1], w[0])


def batches(n: int, batch_size: int, epoch: int, seed: int) -> Iterator[np.ndarray]:
    """Row indices of each mini-batch of ``epoch``; every party derives the same."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    size = n if batch_size <= 0 else batch_size
    for start in range(0, n, size):
        yield np.sort(order[start : start + size])


def fixed_partition(n: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """The batches of a run whose partition stays fixed (epoch 0's batches), numbered by
    position: what a protocol that prepares per-batch statistics once
    (:mod:`veil.ml.lr_gram`) builds them for."""
    return list(batches(n, batch_size, 0, seed))


def fixed_batches(
    n: int, batch_size: int, epoch: int, seed: int
) -> Iterator[tuple[int, np.ndarray]]:
    """``(batch number, row indices)`` of :func:`fixed_partition`, visited in a fresh
    order each epoch."""
    parts = fixed_partition(n, batch_size, seed)
    order = np.random.default_rng([seed, epoch, 1]).permutation(len(parts))
    for b in order.tolist():
        yield b, parts[b]


def step(
    w: np.ndarray, grad: np.ndarray, lr: float, opts: LROptions, n_penalised: int
) -> np.ndarray:
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


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, stable for large |z|."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)))


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties get their mean rank)."""
    y = np.asarray(y) > 0.5
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n0 == 0 or n1 == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i : j + 1] = 0.5 * (i + j) + 1.0
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def taylor_fit_plain(
    Xs: Sequence[np.ndarray], y: np.ndarray, opts: LROptions, seed: int, fixed: bool = False
) -> list[np.ndarray]:
    """The federated algorithm run in the clear on all parties' (scaled) columns.

    ``Xs[0]`` is the label holder's block (with its intercept column last if
    ``fit_intercept``). Returns each block's coefficients. ``fixed``: the batches of
    :func:`fixed_batches` (the ``gram`` protocol), else :func:`batches`. Tests compare
    the encrypted run with this; it never runs inside a protocol.
    """
    ws = [np.zeros(X.shape[1]) for X in Xs]
    sw = sample_weights(y, opts.class_weight)
    for epoch in range(opts.epochs):
        lr = opts.learning_rate_at(epoch)
        if fixed:
            order = [idx for _, idx in fixed_batches(len(y), opts.batch_size, epoch, seed)]
        else:
            order = list(batches(len(y), opts.batch_size, epoch, seed))
        for idx in order:
            z = sum(X[idx] @ w for X, w in zip(Xs, ws, strict=True))
            d = sw[idx] * (0.25 * z + 0.5 - y[idx])
            for p, X in enumerate(Xs):
                pen = X.shape[1] - (1 if p == 0 and opts.fit_intercept else 0)
                ws[p] = step(ws[p], X[idx].T @ d / len(idx), lr, opts, pen)
    return ws
