"""What a job left in this node's output folder, as JSON for people.

:func:`run_report` reads the runner's ``report.json`` (or ``failed-report.json``):
each step's status, seconds, traffic and error, and the failed workers' last log
lines. :func:`model_report` reads what the ``evaluate`` step wrote for this node's
party (``metrics.json``) and turns its own ``predictions.csv`` into curve points
(ROC, KS, gain) with at most :data:`MAX_POINTS` points each, and adds
``importance.json``. Only curve points and aggregates go to the node's own
operator (a curve's thresholds are score values), never a row or an id. Each node
shows only its own party's part.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

REPORTS = ("report.json", "failed-report.json")
MAX_POINTS = 200


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_report(out: Path) -> dict[str, object]:
    """The runner's report of this node's worker (``found`` false before it ends)."""
    for name in REPORTS:
        rep = _json(out / name)
        if isinstance(rep, dict):
            return {"found": True, "file": name, "report": rep}
    return {"found": False, "file": None, "report": None}


def _thin(*cols: np.ndarray[Any, Any]) -> list[list[float]]:
    """Rows of ``cols`` with at most MAX_POINTS kept (always the first and last)."""
    n = len(cols[0])
    idx = np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(int))
    return [[round(float(c[i]), 6) for c in cols] for i in idx]


def _curves(y: np.ndarray[Any, Any], s: np.ndarray[Any, Any]) -> dict[str, Any]:
    from veil.ml import metrics

    fpr, tpr, thr = metrics.roc_curve(y, s)
    thr = np.where(np.isfinite(thr), thr, 1.0)
    pos = float(np.mean(y))
    share = pos * tpr + (1 - pos) * fpr  # population share above each threshold
    return {
        "roc": _thin(fpr, tpr, thr),  # [fpr, tpr, threshold]
        "ks": _thin(share, tpr, fpr, thr),  # [population share, events, non-events, threshold]
    }


def model_report(out: Path, me: str) -> dict[str, object]:
    """This party's evaluation: metrics, curves, IV and importance (what it has of them)."""
    mine = out / me
    metrics_doc = _json(mine / "metrics.json")
    importance = _json(mine / "importance.json")
    curves: dict[str, Any] = {}
    pred = mine / "predictions.csv"
    if isinstance(metrics_doc, dict) and pred.is_file():
        import pandas as pd

        df = pd.read_csv(pred)
        if {"score", "label"} <= set(df.columns):
            groups = df.groupby("set") if "set" in df.columns else [("all", df)]
            for name, g in groups:
                y = g["label"].to_numpy(dtype=np.int64)
                if 0 < y.sum() < len(y):
                    curves[str(name)] = _curves(y, g["score"].to_numpy(dtype=np.float64))
    sets = metrics_doc.get("sets", {}) if isinstance(metrics_doc, dict) else {}
    return {
        "party": me,
        "label_holder": bool(sets),
        "sets": sets,
        "curves": curves,
        "psi_train_test": metrics_doc.get("psi_train_test")
        if isinstance(metrics_doc, dict)
        else None,
        "iv": metrics_doc.get("iv", {}) if isinstance(metrics_doc, dict) else {},
        "importance": importance if isinstance(importance, dict) else {},
    }
