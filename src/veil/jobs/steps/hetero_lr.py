"""The ``hetero_lr`` step: vertical logistic regression in a job.

Trains on the split's training rows (all rows if no ``split`` ran) and this party's
feature columns (``ctx.state.features`` after ``select``, else all but id/label), under
:data:`veil.policy.DEFAULT_POLICY` (job files cannot name a policy). Each party saves its
own part as ``model.json`` and leaves it in ``ctx.state.model``; the label holder then
scores every row jointly and writes ``predictions.csv`` (``id, score, label, set``), also
left in ``ctx.state.predictions`` for ``evaluate``. The ``predict`` step
(:mod:`veil.jobs.steps.predict`) scores later rows with :func:`score_rows`. The model
files and predictions are the same whichever protocol trained them, so ``predict``,
``evaluate`` and ``scorecard`` work unchanged.

``protocol`` (job-file key) chooses how:

- ``ss`` and ``auto`` (the default): secret-sharing LR (:mod:`veil.ml.ss_lr`, which
  lists what each party learns). No gradient, residual or score is revealed; each party
  learns only its own coefficients and, with early stopping, the label holder one
  validation loss per epoch. With ``dealer: PARTY`` (a party of the job file without
  ``data:``, that only makes the Beaver triples, sees no data and saves no model) it is
  fast; without it the label holder and the first partner make the triples under
  ``he`` with ``key_bits`` keys (no third party, slower; ``class_weight`` or a sigmoid
  other than ``linear`` takes Beaver triples every step, several times slower again
  without a dealer). Options beyond the shared ones: ``sigmoid``, ``frac_bits``,
  ``feature_frac_bits``, ``dealer``.
- ``he`` and ``gram`` (opt-in, :mod:`veil.ml.lr`; what each party learns is in
  :mod:`veil.ml.lr._train`): faster, but **each party learns its own batch gradient**
  (as in FATE's CoordinatedLR), from which the label holder reads much of the partner's
  batch scores (least-squares R² 0.65 against 0.51 from its own columns at 64-row
  batches; ``tests/ml/lr/test_ss_attacks.py``).
- ``auto`` falls back to ``he``/``gram`` only for ``penalty: l1`` (its proximal step
  needs comparisons on shares, which :mod:`veil.mpc` lacks); the step's outputs then
  carry a ``warning`` that the run reveals each party's gradient, which ``veil run``
  prints and writes to ``report.json``.

Parameters: the options of :class:`veil.ml.lr.LROptions` under their job-file keys
(``epochs``, ``batch_size``, ``learning_rate``, ``schedule``, ``decay``, ``penalty``,
``alpha``, ``patience``, ``class_weight``, ``fit_intercept``, ``standardize``, ``clip``,
``he`` (the scheme: ``ou`` or ``paillier``), ``key_bits``, ``tol``, ``feature_bits``
(``he``/``gram`` only), ``seed``, ``protocol``), ``validation_every`` (with
``patience``: every k-th training row is held out for early stopping on the validation
Taylor loss, computed under HE or on shares, default 5) and ``label_holder``.
``batch_size`` below the policy's minimum for the widest party's columns is refused when
training starts. ``tol`` under ``ss`` compares the Euclidean norm of an epoch's whole
step (at least its largest move, so ss never stops before ``he`` would).
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
AUTO = "auto"
GRADIENT_WARNING = (
    "hetero_lr: protocol auto chose he/gram because {why}; each party learns its own "
    "batch gradients, from which the label holder can estimate the partner's batch scores "
    "(use protocol: ss to reveal none)"
)


def ss_unavailable(params: Mapping[str, object]) -> str | None:
    """Why ``protocol: auto`` cannot be secret-sharing LR here, or None (it is)."""
    if params.get("penalty") == "l1":
        return "penalty l1 needs comparisons on shares, which protocol ss lacks"
    return None


def validate(params: Mapping[str, Any], job: JobSpec, field: str) -> Mapping[str, Any]:
    """Check the options (by building them) and find the label holder."""
    proto = params.get("protocol", AUTO)
    fallback = ss_unavailable(params) if proto == AUTO else None
    if proto == SS or (proto == AUTO and fallback is None):
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
    out = dict(lr)
    if isinstance(out.get("class_weight"), Mapping):
        out["class_weight"] = {str(k): v for k, v in out["class_weight"].items()}
    if fallback is not None:
        out["fallback"] = fallback
    every = _validation_every(params, field)
    return {**out, "validation_every": every, "label_holder": label_holder_of(params, job, field)}


def _validation_every(params: Mapping[str, Any], field: str) -> int:
    every = params.get("validation_every", 5)
    if isinstance(every, bool) or not isinstance(every, int) or every < 2:
        raise ConfigError(f"{field}.validation_every", f"must be an integer >= 2, got {every!r}")
    return every


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
    """``protocol: ss`` (or ``auto``): the options, the label holder and the dealer (a
    party without data)."""
    check_keys(params, (*SS_KEYS, "validation_every", "label_holder"), field)
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
    every = _validation_every(params, field)
    return {**out, "protocol": SS, "validation_every": every, "label_holder": lh}


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
    fit_rows, valid = train_idx, None
    if int(params.get("patience", 0)) > 0:
        hold = np.arange(len(train_idx)) % int(params["validation_every"]) == 0
        fit_rows, valid = train_idx[~hold], data.take(train_idx[hold])
    out: dict[str, Any]
    if params.get("protocol") == SS:
        model, ss_report = _train_ss(s, ctx.party == lh, data.take(fit_rows), valid, params)
        out = {
            "protocol": SS,
            "epochs_run": ss_report.epochs_run,
            "stopped_by": ss_report.stopped_by,
            "triples": ss_report.triples,
            "offline_seconds": round(ss_report.offline_seconds, 3),
        }
        seconds, losses = ss_report.seconds, ss_report.valid_loss
    else:
        opts = _options(params)
        fn = train_label_holder if ctx.party == lh else train_partner
        model, report = fn(s, data.take(fit_rows), opts, valid, policy=DEFAULT_POLICY)
        out = {"protocol": str(opts.protocol), "epochs_run": report.epochs_run}
        out["stopped_by"] = report.stopped_by
        if "fallback" in params:
            out["warning"] = GRADIENT_WARNING.format(why=params["fallback"])
        seconds, losses = report.seconds, report.valid_loss
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
        if losses:
            out["best_valid_loss"] = round(min(losses), 6)
    return out


def _ss_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k in SS_KEYS}


def _train_ss(
    s: Session,
    is_lh: bool,
    data: PartyData,
    valid: PartyData | None,
    params: Mapping[str, Any],
) -> tuple[PartyModel, ss_lr.SSLRReport]:
    """Secret-sharing LR on the training rows (see :mod:`veil.ml.ss_lr`)."""
    opts = ss_lr.SSLROptions.from_mapping(_ss_params(params))
    fn = ss_lr.train_label_holder if is_lh else ss_lr.train_partner
    return fn(s, data, opts, valid, policy=DEFAULT_POLICY)


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
