"""Credit-model metrics on the label holder's scores: AUC, KS, lift/gain, PSI.

Plain numpy, computed where the labels and scores already are (the label
holder), so nothing here sends a message. Conventions follow scikit-learn
(``roc_curve``, ``roc_auc_score``, ``confusion_matrix``) and, for KS, lift and
population stability, Siddiqi, *Credit Risk Scorecards* (2006), ch. 7-8.
A higher score means a higher probability of the event (label 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError
from veil.ml.labels import check_labels

FloatArray = npt.NDArray[np.float64]


def _inputs(y: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], FloatArray]:
    labels = check_labels(y)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != labels.shape:
        raise ConfigError("scores", f"{s.shape} does not match labels {labels.shape}")
    if not np.isfinite(s).all():
        raise ConfigError("scores", "contain NaN or infinity", "check the model output")
    return labels, s


def roc_curve(y: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """False-positive rate, true-positive rate and thresholds (descending), one
    point per distinct score, starting at (0, 0) like scikit-learn's (unpruned)."""
    labels, s = _inputs(y, scores)
    order = np.argsort(-s, kind="mergesort")
    s, labels = s[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(labels)[last].astype(np.float64)
    fps = (last + 1 - tps).astype(np.float64)
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    thresholds = np.r_[np.inf, s[last]]
    return fpr, tpr, thresholds


def auc(y: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve (ties count one half)."""
    fpr, tpr, _ = roc_curve(y, scores)
    return float(np.trapezoid(tpr, fpr))


def ks(y: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic max(TPR - FPR) and the score where it is reached."""
    fpr, tpr, thr = roc_curve(y, scores)
    i = int(np.argmax(tpr - fpr))
    return float(tpr[i] - fpr[i]), float(thr[i])


@dataclass(frozen=True)
class DecileRow:
    """One row of a lift/gain table (decile 1 = highest scores)."""

    decile: int
    rows: int
    events: int
    event_rate: float
    cum_gain: float
    lift: float
    cum_lift: float


def lift_table(y: npt.ArrayLike, scores: npt.ArrayLike, n_groups: int = 10) -> list[DecileRow]:
    """Lift and cumulative gain by score decile (highest scores first)."""
    labels, s = _inputs(y, scores)
    if not 2 <= n_groups <= len(s):
        raise ConfigError("n_groups", f"must be in [2, {len(s)}], got {n_groups}")
    order = np.argsort(-s, kind="mergesort")
    parts = np.array_split(labels[order], n_groups)
    base = labels.mean()
    total_events = labels.sum()
    rows: list[DecileRow] = []
    cum_e = cum_n = 0
    for i, part in enumerate(parts, start=1):
        e = int(part.sum())
        cum_e += e
        cum_n += len(part)
        rate = e / len(part)
        rows.append(
            DecileRow(
                decile=i,
                rows=len(part),
                events=e,
                event_rate=rate,
                cum_gain=cum_e / total_events,
                lift=rate / base,
                cum_lift=(cum_e / cum_n) / base,
            )
        )
    return rows


def confusion(
    y: npt.ArrayLike, scores: npt.ArrayLike, threshold: float = 0.5
) -> npt.NDArray[np.int64]:
    """2x2 confusion matrix ``[[tn, fp], [fn, tp]]``, predicting 1 when score >= threshold."""
    labels, s = _inputs(y, scores)
    pred = (s >= threshold).astype(np.int64)
    return np.bincount(labels * 2 + pred, minlength=4).reshape(2, 2).astype(np.int64)


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, n_bins: int = 10) -> float:
    """Population stability index of ``actual`` scores against ``expected`` ones.

    Bins are deciles of ``expected``; empty shares are floored at 1e-6. Under
    0.1 is usually read as stable, over 0.25 as a shift.
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.size == 0 or a.size == 0:
        raise ConfigError("scores", "PSI needs non-empty train and test scores")
    edges = np.unique(np.quantile(e, np.linspace(0, 1, n_bins + 1)[1:-1]))
    pe = np.bincount(np.searchsorted(edges, e, "right"), minlength=len(edges) + 1) / e.size
    pa = np.bincount(np.searchsorted(edges, a, "right"), minlength=len(edges) + 1) / a.size
    pe, pa = np.maximum(pe, 1e-6), np.maximum(pa, 1e-6)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


@dataclass(frozen=True)
class Evaluation:
    """Every metric of one scored set."""

    n: int
    auc: float
    ks: float
    ks_threshold: float
    confusion: list[list[int]]
    threshold: float
    deciles: list[DecileRow]


def evaluate(y: npt.ArrayLike, scores: npt.ArrayLike, threshold: float = 0.5) -> Evaluation:
    """AUC, KS, confusion matrix at ``threshold`` and the decile table."""
    k, k_thr = ks(y, scores)
    return Evaluation(
        n=len(np.asarray(scores)),
        auc=auc(y, scores),
        ks=k,
        ks_threshold=k_thr,
        confusion=confusion(y, scores, threshold).tolist(),
        threshold=threshold,
        deciles=lift_table(y, scores),
    )
