"""The ``evaluate`` step: AUC, KS, lift/gain, confusion matrix, PSI and plots.

Runs on the label holder only, on the predictions a training step left: the
``predictions`` DataFrame in ``ctx.state`` or ``predictions.csv`` in its output
folder (columns ``id, score, label, set``). Writes ``roc.png``, ``ks.png``,
``lift_gain.png``, ``iv.png`` (if a binning step ran), ``metrics.json`` and a
self-contained ``report.html`` there (:mod:`veil.ml.report`). Nothing is sent;
partners do nothing.

After ``fedavg`` every party instead scores its own rows with the global model
(:func:`veil.jobs.steps.fedavg.evaluate_federated`): a bank its training and held-out
rows, any party its ``test:`` file.

Parameters: ``threshold`` (0.5, for the confusion matrix), ``label_holder``, ``top_k``
(alert counts for precision/recall at the top k, default [100]).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from veil.errors import ConfigError
from veil.jobs.context import StepContext
from veil.jobs.params import Checked, check_keys, label_holder_of
from veil.jobs.registry import register
from veil.jobs.spec import JobSpec
from veil.jobs.steps import _credit as c
from veil.jobs.steps import fedavg as fed
from veil.ml.report import write_report

KEYS = ("threshold", "label_holder", "top_k")
PREDICTIONS = "predictions.csv"


def validate(params: Mapping[str, object], job: JobSpec, field: str) -> Mapping[str, object]:
    check_keys(params, KEYS, field)
    out = {
        "threshold": c.number(params, "threshold", field, 0.5, lo=0.0, hi=1.0),
        "top_k": fed.top_k_param(params, field),
    }
    if fed.horizontal(params, job):  # every labelled party scores its own rows
        return {**out, "label_holder": None}
    return {**out, "label_holder": label_holder_of(params, job, field)}


def _predictions(ctx: StepContext) -> pd.DataFrame:
    df = ctx.state.predictions
    if df is None:
        path = ctx.out_dir / PREDICTIONS
        if not path.exists():
            raise ConfigError(
                "steps.evaluate",
                "found no predictions of a training step",
                "run hetero_lr (or another training step) before evaluate",
            )
        df = pd.read_csv(path)
    missing = {"score", "label"} - set(df.columns)
    if missing:
        raise ConfigError(PREDICTIONS, f"lacks columns {sorted(missing)}", "id, score, label, set")
    return df


@register("evaluate", validate=validate)
def evaluate(ctx: StepContext, params: Mapping[str, object]) -> dict[str, object]:
    """Metrics and plots of the label holder's train/test predictions."""
    if ctx.state.fedavg is not None:
        p = Checked(params)
        return fed.evaluate_federated(ctx, p.get_float("threshold"), p.ints("top_k"))
    if params["label_holder"] is None:
        raise ConfigError("steps.evaluate", "found no fedavg model", "run fedavg before evaluate")
    if not c.is_label_holder(ctx, params):
        return {}
    df = _predictions(ctx)
    groups = df.groupby("set") if "set" in df.columns else [("all", df)]
    sets = {str(k): (g["label"].to_numpy(), g["score"].to_numpy()) for k, g in groups}
    binning = ctx.state.binning
    iv = [(b.key, b.iv) for b in binning.stats] if binning is not None else []
    p = Checked(params)
    evals = write_report(ctx.out_dir, sets, iv=iv, threshold=p.get_float("threshold"))
    out: dict[str, Any] = {}
    fed.add_top_k(ctx.out_dir, sets, p.ints("top_k"))
    for name, e in evals.items():
        out[f"auc_{name}"] = round(e.auc, 6)
        out[f"ks_{name}"] = round(e.ks, 6)
    return out
