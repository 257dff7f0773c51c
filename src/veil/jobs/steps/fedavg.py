"""The ``fedavg`` step: horizontal federated learning between banks with the same columns.

Runs :mod:`veil.ml.horizontal.fedavg` (what each party learns is listed there): every
party with ``data:`` is a bank and names its ``label:``; the aggregator is the party
without ``data:`` or the bank named by ``aggregator``. Every party saves the global
model as ``model.json`` (with the round history and, with ``dp``, the privacy budget)
and keeps it for ``evaluate``, which then scores the bank's training and held-out rows
and every party's ``test:`` file (:func:`evaluate_federated`). If a secure-aggregation
round loses more banks than ``dropout_threshold`` the step fails and, as with any
failed step, no party's outputs are published.

Parameters: ``aggregator`` and the fields of
:class:`veil.ml.horizontal.options.FedAvgOptions`: ``model`` (logistic, mlp),
``hidden``, ``rounds``, ``local_epochs``, ``batch_size``, ``learning_rate``,
``fedprox_mu``, ``class_weight``, ``focal_gamma``, ``validation_share``,
``early_stopping``, ``standardize``, ``secure_aggregation`` (default true),
``dropout_threshold``, ``neighbours``, ``frac_bits``, ``phase_timeout``, ``dp``
(``{clip, noise_multiplier, delta}`` or true), ``seed``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from veil.errors import ConfigError
from veil.fileio import write_csv, write_json
from veil.jobs.context import StepContext
from veil.jobs.params import Checked, check_keys
from veil.jobs.registry import register
from veil.jobs.spec import JobSpec, load_test, one_of
from veil.ml.horizontal import (
    BankData,
    FedAvgOptions,
    FedResult,
    save_model,
    train_aggregator,
    train_client,
)
from veil.ml.report import write_report
from veil.protocols.secagg import AGGREGATOR, make_plan

MODEL_FILE = "model.json"
PREDICTIONS = "predictions.csv"
OPTION_KEYS = tuple(f.name for f in fields(FedAvgOptions))


def validate(params: Mapping[str, object], job: JobSpec, field: str) -> Mapping[str, object]:
    """Check the options and find the aggregator and the banks."""
    check_keys(params, (*OPTION_KEYS, "aggregator"), field)
    opts = _options(params, field)
    banks = [p.name for p in job.parties if p.data is not None]
    dataless = [p.name for p in job.parties if p.data is None]
    agg = params.get("aggregator")
    if agg is None:
        if len(dataless) != 1:
            raise ConfigError(
                f"{field}.aggregator",
                f"{len(dataless)} parties have no data {dataless}",
                "add one party without 'data:' to aggregate, or name a bank: aggregator: NAME",
            )
        agg = dataless[0]
    elif agg not in job.party_names:
        raise ConfigError(f"{field}.aggregator", f"unknown party '{agg}'", one_of(job.party_names))
    for p in dataless:
        if p != agg:
            raise ConfigError(
                f"parties.{p}.data", "missing", "every party but the aggregator is a bank"
            )
    for b in banks:
        if job.party(b).label is None:
            raise ConfigError(
                f"parties.{b}.label", "a fedavg bank needs a label column", "add 'label: COLUMN'"
            )
    if len(banks) < 2:
        raise ConfigError(field, f"needs two or more banks with data, got {banks}", "add a bank")
    clients = [b for b in banks if b != agg]
    if opts.secure_aggregation:
        try:
            make_plan(clients, opts.secagg_params())
        except ConfigError as e:
            raise ConfigError(
                f"{field}.{e.field}",
                e.problem,
                "name a party without data as the aggregator, or set secure_aggregation: false"
                if e.field == "secure_aggregation"
                else e.fix,
            ) from None
    return {**params, "aggregator": agg, "banks": banks}


def _options(params: Mapping[str, object], field: str = "steps.fedavg") -> FedAvgOptions:
    try:
        return FedAvgOptions.from_mapping({k: v for k, v in params.items() if k in OPTION_KEYS})
    except ConfigError as e:
        raise ConfigError(f"{field}.{e.field}", e.problem, e.fix) from None


@register("fedavg", validate=validate)
def fedavg(ctx: StepContext, params: Mapping[str, object]) -> dict[str, object]:
    """Train one model across the banks; every party keeps it."""
    opts = _options(params)
    p = Checked(params)
    agg, banks = p.get_str("aggregator"), list(p.strs("banks"))
    s = ctx.session.with_roles({AGGREGATOR: agg})
    data = None
    if ctx.party in banks:
        if ctx.label_col is None:
            raise ConfigError(f"parties.{ctx.party}.label", "missing", "name the 0/1 label column")
        data = BankData.from_frame(ctx.frame, ctx.label_col, id_column=ctx.id_col, who=ctx.party)
    if ctx.party == agg:
        res = train_aggregator(s, opts, banks=[b for b in banks if b != agg], data=data)
    else:
        assert data is not None  # the validator made every other party a bank
        res = train_client(s, data, opts)
    save_model(res.model, ctx.out_dir / MODEL_FILE)
    ctx.state.fedavg = res
    hist = res.model.history
    out: dict[str, Any] = {"rounds": len(hist), "stopped_by": res.model.stopped_by}
    if hist and "train_loss" in hist[-1]:
        out["train_loss"] = round(float(hist[-1]["train_loss"]), 6)
    if res.model.dp is not None:
        out["epsilon"] = round(float(res.model.dp["epsilon"]), 4)
    return out


# -- evaluation of the global model (called by the evaluate step) ------------------------


def evaluate_federated(
    ctx: StepContext, threshold: float, top_k: Sequence[int]
) -> dict[str, object]:
    """Score this party's training and held-out rows (a bank) and its test file (any
    party) with the global model; write ``predictions.csv`` (``id, score, label, set``),
    ``metrics.json`` (AUC, KS, precision and recall of the top-k alerts per set) and
    the report. Nothing is sent."""
    res = ctx.state.fedavg
    if res is None:
        raise ConfigError("steps.evaluate", "found no fedavg model", "run fedavg before evaluate")
    parts = []
    if res.holdout is not None:
        who = f"parties.{ctx.party}.data"
        parts.append(_scored(ctx, ctx.frame, res, who, np.where(res.holdout, "holdout", "train")))
    test = load_test(ctx.frame)
    if test is not None:
        parts.append(_scored(ctx, test, res, f"parties.{ctx.party}.test", "test"))
    if not parts:
        return {}
    df = pd.concat(parts, ignore_index=True)
    write_csv(df, ctx.out_dir / PREDICTIONS)
    ctx.state.predictions = df
    if "label" not in df.columns:
        return {"rows_scored": len(df)}
    sets = {}
    for name, g in df.groupby("set", sort=False):
        y = g["label"].to_numpy()
        if np.unique(y).size == 2:  # a set without both classes has no AUC
            sets[str(name)] = (y, g["score"].to_numpy())
    out: dict[str, Any] = {"rows_scored": len(df)}
    if not sets:
        return out
    evals = write_report(
        ctx.out_dir, sets, threshold=threshold, title=f"FedAvg model at {ctx.party}"
    )
    alerts = add_top_k(ctx.out_dir, sets, top_k)
    for name, e in evals.items():
        out[f"auc_{name}"] = round(e.auc, 6)
        out[f"ks_{name}"] = round(e.ks, 6)
        for row in alerts[name]:
            out[f"precision_at_{row['k']}_{name}"] = round(row["precision"], 6)
    return out


def _scored(
    ctx: StepContext, frame: pd.DataFrame, res: FedResult, who: str, sets: Any
) -> pd.DataFrame:
    scores = res.model.score_frame(frame, who)
    ids = frame[ctx.id_col].astype(str) if ctx.id_col in frame.columns else range(len(frame))
    df = pd.DataFrame({"id": list(ids), "score": scores})
    label = ctx.label_col
    if label is not None and label in frame.columns:
        df["label"] = pd.to_numeric(frame[label], errors="coerce").to_numpy()
        if df["label"].isna().any() or not df["label"].isin([0, 1]).all():
            raise ConfigError(f"{who}", f"label column '{label}' is not 0/1", "fix the labels")
        df["label"] = df["label"].astype(int)
    df["set"] = sets
    return df


def top_k_alerts(y: np.ndarray, scores: np.ndarray, k: int) -> dict[str, float]:
    """Precision and recall of the ``k`` highest scores taken as alerts."""
    k = min(k, y.size)
    top = np.argsort(-scores, kind="mergesort")[:k]
    hits = float(y[top].sum())
    positives = float(y.sum())
    return {
        "k": k,
        "precision": hits / k if k else 0.0,
        "recall": hits / positives if positives else 0.0,
    }


def add_top_k(
    out_dir: Path, sets: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]], top_k: Sequence[int]
) -> dict[str, list[dict[str, float]]]:
    """Add precision/recall at each k of ``top_k`` per set to ``metrics.json``."""
    alerts = {
        name: [top_k_alerts(np.asarray(y), np.asarray(s, dtype=float), k) for k in top_k]
        for name, (y, s) in sets.items()
    }
    path = out_dir / "metrics.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    summary["top_k"] = alerts
    write_json(summary, path)
    return alerts


def horizontal(params: Mapping[str, object], job: JobSpec) -> bool:
    """True when ``evaluate`` follows horizontal training: no label holder named and
    several parties with labels (each then evaluates its own rows)."""
    return params.get("label_holder") is None and sum(p.label is not None for p in job.parties) > 1


def top_k_param(params: Mapping[str, object], field: str) -> list[int]:
    """``top_k``: alert counts (positive integers), default [100]."""
    v = params.get("top_k", [100])
    v = [v] if isinstance(v, int) and not isinstance(v, bool) else v
    if (
        not isinstance(v, list)
        or not v
        or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in v)
    ):
        raise ConfigError(
            f"{field}.top_k", f"must be a list of positive integers, got {v!r}", "[100, 500]"
        )
    return list(v)
