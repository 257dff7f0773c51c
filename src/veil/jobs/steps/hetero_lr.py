"""The ``hetero_lr`` step: vertical logistic regression in a job.

Trains :mod:`veil.ml.lr` (what each party learns is listed in :mod:`veil.ml.lr._train`)
on the split's training rows (all rows if no ``split`` ran) and this party's feature
columns (``ctx.state.features`` after ``select``, else all but id/label), under
:data:`veil.policy.DEFAULT_POLICY` (job files cannot name a policy). Each party saves its
own part as ``model.json`` and leaves it in ``ctx.state.model``; the label holder then
scores every row jointly and writes ``predictions.csv`` (``id, score, label, set``), also
left in ``ctx.state.predictions`` for ``evaluate``. The ``predict`` step
(:mod:`veil.jobs.steps.predict`) scores later rows with :func:`score_rows`.

Parameters: the options of :class:`veil.ml.lr.LROptions` under their job-file keys
(``epochs``, ``batch_size``, ``learning_rate``, ``schedule``, ``decay``, ``penalty``,
``alpha``, ``patience``, ``class_weight``, ``fit_intercept``, ``standardize``, ``clip``,
``he`` (the scheme: ``ou`` or ``paillier``), ``key_bits``, ``tol``, ``feature_bits``,
``seed``, ``protocol``: ``auto``, ``gram`` or ``he``), ``validation_every`` (with
``patience``: every k-th training row is held out for early stopping on the encrypted
validation loss, default 5) and ``label_holder``. ``batch_size`` below the policy's
minimum for the widest party's columns is refused when training starts.

``protocol: ss`` trains secret-sharing LR (:mod:`veil.ml.ss_lr`, which lists what each
party learns) with the same option names (``patience`` and ``tol`` stay 0) plus
``sigmoid``, ``frac_bits``, ``feature_frac_bits`` and ``dealer``: a party of the job
file without ``data:`` that only makes the Beaver triples and sees no data (it saves no
model); without ``dealer`` the label holder and the first partner make the triples
under ``he`` with ``key_bits`` keys. The model files and predictions are the same as
the other protocols', so ``predict``, ``evaluate`` and ``scorecard`` work unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from veil.errors import ConfigError
from veil.fileio import write_csv
from veil.jobs.context import StepContext
from veil.jobs.params import check_keys, label_holder_of
from veil.jobs.registry import register
from veil.jobs.spec import JobSpec
from veil.ml import ss_lr
from veil.ml.lr import (
    LABEL_HOLDER,
    LROptions,
    PartyData,
    PartyModel,
    predict_label_holder,
    predict_partner,
    save_model,
    train_label_holder,
    train_partner,
)
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY

MODEL_FILE = "model.json"
PREDICTIONS = "predictions.csv"
LR_KEYS = LROptions.job_keys()
SS_KEYS = tuple(dict.fromkeys((*LR_KEYS, *ss_lr.SSLROptions.__dataclass_fields__)))
SS = "ss"


def validate(params: Mapping[str, Any], job: JobSpec, field: str) -> Mapping[str, Any]:
    """Check the options (by building them) and find the label holder."""
    if params.get("protocol") == SS:
        return _validate_ss(params, job, field)
    check_keys(params, (*LR_KEYS, "validation_every", "label_holder"), field)
    if len(job.parties) < 2:
        raise ConfigError(field, "vertical LR needs the label holder and at least one partner")
    lr = {k: v for k, v in params.items() if k in LR_KEYS}
    try:
        opts = LROptions.from_mapping(lr)
        DEFAULT_POLICY.check_key_bits(str(opts.scheme), opts.key_bits, "hetero_lr.key_bits")
        _check_batch_floor(opts.batch_size)
    except ConfigError as e:
        raise ConfigError(f"{field}.{e.field.split('.')[-1]}", e.problem, e.fix) from None
    every = params.get("validation_every", 5)
    if isinstance(every, bool) or not isinstance(every, int) or every < 2:
        raise ConfigError(f"{field}.validation_every", f"must be an integer >= 2, got {every!r}")
    out = dict(lr)
    if isinstance(out.get("class_weight"), Mapping):
        out["class_weight"] = {str(k): v for k, v in out["class_weight"].items()}
    return {**out, "validation_every": every, "label_holder": label_holder_of(params, job, field)}


def _check_batch_floor(batch_size: int) -> None:
    """Refuse a batch below the policy's floor (0 = full batch); wide blocks raise the
    floor further when training starts, once the column counts are known."""
    floor = DEFAULT_POLICY.min_batch_rows
    if 0 < batch_size < floor:
        raise ConfigError(
            "hetero_lr.batch_size",
            f"{batch_size} rows is below the policy's minimum batch "
            f"({floor}, more for wide blocks)",
            f"use batch_size: {floor} or more (0 = full batch)",
        )


def _validate_ss(params: Mapping[str, Any], job: JobSpec, field: str) -> Mapping[str, Any]:
    """``protocol: ss``: the options, the label holder and the dealer (a party without data)."""
    check_keys(params, (*SS_KEYS, "label_holder"), field)
    lh = label_holder_of(params, job, field)
    try:
        opts = ss_lr.SSLROptions.from_mapping({k: v for k, v in params.items() if k in SS_KEYS})
        if opts.dealer is None:
            DEFAULT_POLICY.check_key_bits(opts.he, opts.key_bits, "hetero_lr.key_bits")
        _check_batch_floor(opts.batch_size)
    except ConfigError as e:
        raise ConfigError(f"{field}.{e.field.split('.')[-1]}", e.problem, e.fix) from None
    dataless = [p.name for p in job.parties if p.data is None]
    if opts.dealer is not None:
        if opts.dealer not in job.party_names:
            raise ConfigError(
                f"{field}.dealer",
                f"unknown party '{opts.dealer}'",
                "add a party without 'data:' to the job's parties and name it here",
            )
        if job.party(opts.dealer).data is not None or opts.dealer == lh:
            raise ConfigError(
                f"{field}.dealer",
                f"'{opts.dealer}' is a data party; a dealer must see no data",
                "name a third party listed without 'data:' (it only makes triples), "
                "or leave dealer out to make the triples under HE between the two parties",
            )
    others = [p for p in dataless if p != opts.dealer]
    if others:
        raise ConfigError(
            f"{field}.dealer",
            f"parties {others} have no data and would be partners of the model",
            "name the one party without data as dealer, or give them data",
        )
    if len(job.parties) - len(dataless) < 2:
        raise ConfigError(field, "vertical LR needs the label holder and at least one partner")
    out = {k: v for k, v in params.items() if k in SS_KEYS}
    if isinstance(out.get("class_weight"), Mapping):
        out["class_weight"] = {str(k): v for k, v in out["class_weight"].items()}
    return {**out, "protocol": SS, "label_holder": lh}


def _options(params: Mapping[str, Any]) -> LROptions:
    return LROptions.from_mapping({k: v for k, v in params.items() if k in LR_KEYS})


def _data(ctx: StepContext, columns: list[str] | None = None) -> PartyData:
    skip = {ctx.id_col, ctx.label_col}
    names = columns or list(ctx.state.features or [str(c) for c in ctx.frame if c not in skip])
    missing = [c for c in names if c not in ctx.frame.columns]
    if missing:
        raise ConfigError(f"parties.{ctx.party}", f"columns {missing} are missing from its data")
    label = ctx.label_col if ctx.label_col in ctx.frame.columns else None
    return PartyData.from_frame(ctx.frame, id_column=ctx.id_col, label=label, features=names)


def _split(ctx: StepContext) -> tuple[np.ndarray, np.ndarray | None]:
    split = ctx.state.split
    if split is None:
        return np.arange(len(ctx.frame)), None
    return np.asarray(split.train_idx), np.asarray(split.test_idx)


@register("hetero_lr", validate=validate)
def hetero_lr(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
    """Vertical logistic regression (HE or secret sharing); each party keeps its own
    coefficients."""
    lh = params["label_holder"]
    s = ctx.session.with_roles({LABEL_HOLDER: lh})
    if params.get("protocol") == SS and params.get("dealer") == ctx.party:
        dealt = ss_lr.run_dealer(s, ss_lr.SSLROptions.from_mapping(_ss_params(params)))
        return {"role": "dealer", "phases": dealt.phases, "words_sent": dealt.words_sent}
    data = _data(ctx)
    if lh == ctx.party and data.y is None:
        raise ConfigError(f"parties.{lh}.label", "the label holder has no label column")
    train_idx, test_idx = _split(ctx)
    if params.get("protocol") == SS:
        model, ss_report = _train_ss(s, ctx.party == lh, data.take(train_idx), params)
        out: dict[str, Any] = {
            "epochs_run": ss_report.epochs_run,
            "stopped_by": ss_report.stopped_by,
            "triples": ss_report.triples,
            "offline_seconds": round(ss_report.offline_seconds, 3),
        }
        seconds = ss_report.seconds
    else:
        opts = _options(params)
        fit_rows, valid = train_idx, None
        if opts.patience > 0:
            hold = np.arange(len(train_idx)) % int(params["validation_every"]) == 0
            fit_rows, valid = train_idx[~hold], data.take(train_idx[hold])
        fn = train_label_holder if ctx.party == lh else train_partner
        model, report = fn(s, data.take(fit_rows), opts, valid, policy=DEFAULT_POLICY)
        out = {"epochs_run": report.epochs_run, "stopped_by": report.stopped_by}
        seconds = report.seconds
    save_model(model, ctx.out_dir / MODEL_FILE)
    ctx.state.model = model
    scores = _joint_scores(s, ctx.party == lh, data, model)
    if scores is not None:
        sets = np.full(data.n_rows, "train", dtype=object)
        if test_idx is not None:
            sets[test_idx] = "test"
        df = pd.DataFrame({"id": data.ids, "score": scores})
        if data.y is not None:
            df["label"] = data.y.astype(int)
        df["set"] = sets
        write_csv(df, ctx.out_dir / PREDICTIONS)
        ctx.state.predictions = df
        out["seconds_per_epoch"] = round(float(np.median(seconds)), 3)
        if params.get("protocol") != SS and report.valid_loss:
            out["best_valid_loss"] = round(min(report.valid_loss), 6)
    return out


def _ss_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k in SS_KEYS}


def _train_ss(
    s: Session, is_lh: bool, data: PartyData, params: Mapping[str, Any]
) -> tuple[PartyModel, ss_lr.SSLRReport]:
    """Secret-sharing LR on the training rows (see :mod:`veil.ml.ss_lr`)."""
    opts = ss_lr.SSLROptions.from_mapping(_ss_params(params))
    fn = ss_lr.train_label_holder if is_lh else ss_lr.train_partner
    return fn(s, data, opts, policy=DEFAULT_POLICY)


def _joint_scores(s: Session, is_lh: bool, data: PartyData, model: PartyModel) -> np.ndarray | None:
    if is_lh:
        return predict_label_holder(s, data, model)
    predict_partner(s, data, model)
    return None


def score_rows(ctx: StepContext, model: PartyModel, label_holder: str) -> np.ndarray | None:
    """Joint scores of the current rows with a vertical LR model (label holder only)."""
    s = ctx.session.with_roles({LABEL_HOLDER: label_holder})
    data = _data(ctx, list(model.feature_names))
    return _joint_scores(s, ctx.party == label_holder, data, model)
