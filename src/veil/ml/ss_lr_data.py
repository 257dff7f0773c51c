"""An SS-LR party's blocks before sharing: checked, standardised, clipped, and the
fixed-point range checks that keep SecureML's local truncation safe
(:mod:`veil.ml.ss_lr` describes the protocol)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from veil.errors import ConfigError
from veil.ml.lr import PartyData
from veil.ml.ss_lr_fit import partition
from veil.ml.ss_lr_options import SSLROptions

__all__ = ["TRUNC_SAFETY_BITS", "check_range", "check_valid_range", "prepare", "scaled"]

TRUNC_SAFETY_BITS = 20  # worst-case truncation failure per value: 2^-20


def prepare(
    data: PartyData, opts: SSLROptions, where: str, intercept: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Check, standardise and clip a block as the HE protocol does (and as
    :meth:`PartyModel.partial_score` will at prediction); intercept column last.
    (The checks repeat ``veil.ml.lr``'s private ``check_features``/``fit_scaling``, which
    this module may not import; once SS-LR lives in that package it should use them.)"""
    X = np.asarray(data.X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(data.feature_names) or not len(X):
        raise ConfigError(f"{where}.rows", f"a {X.shape} table to train on", "run PSI first")
    mean, std = X.mean(axis=0), X.std(axis=0)
    for j, name in enumerate(data.feature_names):
        bad = int((~np.isfinite(X[:, j])).sum())
        if bad:
            raise ConfigError(
                f"{where}.{name}",
                f"{bad} missing or infinite values",
                "impute them or WOE-transform the column first (binning step)",
            )
        if not std[j] > 1e-12:
            raise ConfigError(f"{where}.{name}", "is constant on the training rows", "drop it")
    if opts.standardize:
        X = (X - mean) / std
    if opts.clip > 0:
        X = np.clip(X, -opts.clip, opts.clip)
    if intercept:
        X = np.hstack([X, np.ones((len(X), 1))])
    return (X, mean, std) if opts.standardize else (X, None, None)


def scaled(
    valid: PartyData,
    opts: SSLROptions,
    mean: np.ndarray | None,
    std: np.ndarray | None,
    where: str,
) -> np.ndarray:
    """The validation block with the training rows' scaling and clip (intercept last at
    the label holder, as in :func:`_prepare`)."""
    X = np.asarray(valid.X, dtype=np.float64)
    if X.ndim != 2 or not len(X) or not np.isfinite(X).all():
        raise ConfigError(f"{where}.rows", "no rows, or missing or infinite values", "check them")
    if mean is not None and std is not None:
        X = (X - mean) / std
    if opts.clip > 0:
        X = np.clip(X, -opts.clip, opts.clip)
    if where.startswith("label_holder") and opts.fit_intercept:
        X = np.hstack([X, np.ones((len(X), 1))])
    return X


def check_valid_range(X: np.ndarray, names: Sequence[str], opts: SSLROptions, where: str) -> None:
    """Refuse a validation column whose Gram sums (:mod:`veil.ml.ss_lr_epochs`) risk a
    truncation failure: ``n_valid * max|x|^2`` with twice the features' fraction bits."""
    limit = 64 - 1 - TRUNC_SAFETY_BITS
    for j, name in enumerate([*names, "intercept"][: X.shape[1]]):
        peak = float(np.max(np.abs(X[:, j])))
        bits = float(np.log2(max(len(X) * peak * peak, 1.0))) + 2 * opts.feature_frac_bits
        if bits > limit:
            raise ConfigError(
                f"{where}.{name}",
                f"values up to {peak:.6g} over {len(X)} validation rows make a Gram sum of "
                f"{bits:.1f} bits; above {limit} bits truncation may fail",
                "standardize the column (standardize: true, clip: 3) or hold out fewer rows",
            )


def check_range(  # noqa: PLR0917
    X: np.ndarray,
    names: Sequence[str],
    rows_seed: tuple[int, int],
    opts: SSLROptions,
    where: str,
    weight: float | None = None,
) -> None:
    """Refuse a column whose largest batch gradient risks a truncation failure
    (``rows_seed``: the row count and batch seed; ``weight``: the largest class weight,
    known to the label holder only)."""
    n, seed = rows_seed
    rows = max(len(b) for b in partition(n, opts.batch_size, seed))
    limit = 64 - 1 - TRUNC_SAFETY_BITS
    frac = opts.frac_bits + opts.feature_frac_bits
    for j, name in enumerate([*names, "intercept"][: X.shape[1]]):
        peak = float(np.max(np.abs(X[:, j])))
        bits = float(np.log2(max(rows * peak * 2.0 * (weight or 1.0), 1.0))) + frac
        if bits > limit:
            raise ConfigError(
                f"{where}.{name}",
                f"values up to {peak:.6g} make a batch gradient of {bits:.1f} bits with "
                f"{opts.frac_bits}+{opts.feature_frac_bits} fraction bits; above {limit} bits "
                f"SecureML truncation fails with probability over 2^-{TRUNC_SAFETY_BITS}",
                "standardize the column (standardize: true, clip: 3), or lower batch_size, "
                "frac_bits or feature_frac_bits",
            )
