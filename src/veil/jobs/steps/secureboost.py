"""The ``secureboost`` step (vertical SecureBoost); ``predict`` scores with its model.

``secureboost`` trains on the aligned rows (run ``psi`` first): the party with
the label column is the label holder, every other party a partner (see
:mod:`veil.ml.secureboost.protocol` for the flow and what each party learns).
Training rows are those a ``split`` step left as train (``ctx.state.split``),
else a seeded ``test_size`` hold-out both parties draw alike; with
``early_stopping_rounds`` a seeded ``valid_size`` share of the training rows is
the validation set. Each party writes its own model file
``secureboost_model.json`` and ``importance.json`` (its own features only); the
label holder also writes ``predictions.csv`` (id, score, label, set) for
``evaluate`` and leaves ``model``/``predictions`` in ``ctx.state``.

The ``predict`` step (:mod:`veil.jobs.steps.predict`) scores new rows with the model a
``secureboost`` step left, or with each party's saved model file.

Parameters: the :class:`~veil.ml.secureboost.SBTParams` names (``n_trees``,
``max_depth``, ``learning_rate``, ``min_child_weight``, ``reg_lambda``,
``gamma``, ``max_bin``, ``subsample``, ``colsample``, ``early_stopping_rounds``,
``class_weight``, ``objective``, ``he``, ``key_bits``, ``hide_instance_space``,
``seed``), plus ``test_size`` (0.3) and ``valid_size`` (0.2). The HE key must
meet :data:`veil.policy.DEFAULT_POLICY` (a job cannot relax it).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from veil.errors import ConfigError
from veil.fileio import write_csv, write_json
from veil.jobs.context import StepContext
from veil.jobs.params import Checked, check_keys, label_holder_of
from veil.jobs.registry import register
from veil.jobs.spec import JobSpec
from veil.ml import metrics
from veil.ml import secureboost as sbt
from veil.ml.split import Split
from veil.policy import DEFAULT_POLICY

MODEL_FILE = "secureboost_model.json"
_PARAMS = tuple(f.name for f in dataclasses.fields(sbt.SBTParams))
KEYS = (*_PARAMS, "test_size", "valid_size", "label_holder")


def validate(params: Mapping[str, object], job: JobSpec, field: str) -> Mapping[str, object]:
    """Check the parameters by building :class:`SBTParams` (its errors name the field)."""
    check_keys(params, KEYS, field)
    lh = label_holder_of(params, job, field)
    if len(job.parties) < 2:
        raise ConfigError(field, "needs a label holder and at least one partner", "")
    try:
        p = _params(params)
    except TypeError as e:
        raise ConfigError(field, str(e), "check the parameter types") from None
    DEFAULT_POLICY.check_key_bits(str(p.he), p.key_bits, f"{field}.key_bits")
    for k, default in (("test_size", 0.3), ("valid_size", 0.2)):
        v = params.get(k, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1:
            raise ConfigError(f"{field}.{k}", f"must be in [0, 1), got {v!r}", f"e.g. {default}")
    return {**params, "label_holder": lh}


def _params(params: Mapping[str, object]) -> sbt.SBTParams:
    """SBTParams from the step's parameters; its ``__post_init__`` checks every value
    (a value of the wrong type is a ConfigError or TypeError there), hence the loose
    ``dict`` of keywords."""
    kw: dict[str, Any] = {k: params[k] for k in _PARAMS if k in params}
    cw = kw.get("class_weight")
    if cw is not None:
        kw["class_weight"] = tuple(cw)
    return sbt.SBTParams(**kw)


def _roles(ctx: StepContext, lh: str) -> dict[str, str]:
    roles = {"label_holder": lh}
    for i, q in enumerate(p for p in ctx.parties if p != lh):
        roles[f"partner{i + 1}"] = q
    return roles


def _features(ctx: StepContext) -> list[str]:
    feats = ctx.state.features
    if feats is not None:
        return list(feats)
    return [c for c in ctx.frame.columns if c not in (ctx.id_col, ctx.label_col)]


def _test_mask(ctx: StepContext, n: int, test_size: float, seed: int) -> np.ndarray:
    split = ctx.state.split
    if split is not None and getattr(split, "test_mask", None) is not None:
        return np.asarray(split.test_mask, dtype=bool)
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng([seed, 7]).permutation(n)[: round(test_size * n)]] = True
    ctx.state.split = Split(mask)  # later steps (predict, evaluate) see the same hold-out
    return mask


@register("secureboost", validate=validate)
def secureboost(ctx: StepContext, params: Mapping[str, object]) -> dict[str, object]:
    """Train vertical SecureBoost; the label holder gets train/test predictions."""
    p = _params(params)
    lh = str(params["label_holder"])  # set by validate from the job's label column
    s = ctx.session.with_roles(_roles(ctx, lh))
    feats = _features(ctx)
    x = ctx.frame[feats].to_numpy()
    n = x.shape[0]
    checked = Checked(params)
    test = _test_mask(ctx, n, checked.get_float("test_size", 0.3), p.seed)
    train = np.flatnonzero(~test)
    valid = np.zeros(0, dtype=np.int64)
    if p.early_stopping_rounds:
        rng = np.random.default_rng([p.seed, 8])
        k = round(checked.get_float("valid_size", 0.2) * len(train))
        shuffled = rng.permutation(train)
        valid, train = np.sort(shuffled[:k]), np.sort(shuffled[k:])
    vx = x[valid] if len(valid) else None
    out: dict[str, Any] = {}
    if ctx.party == lh:
        y = ctx.frame[ctx.label_col].to_numpy()
        t0 = time.perf_counter()
        model = sbt.run_label_holder(
            s.sub("train"),
            x[train],
            y[train],
            feats,
            p,
            valid_x=vx,
            valid_y=y[valid] if len(valid) else None,
            policy=DEFAULT_POLICY,
        )
        out["fit_seconds"] = round(time.perf_counter() - t0, 3)  # training only
        scores = sbt.run_predict_label_holder(s.sub("predict"), model, x)
        ctx.state.model = model
        sbt.save(model, ctx.out_dir / MODEL_FILE)
        write_json(model.importance(), ctx.out_dir / "importance.json")
        pred = pd.DataFrame(
            {
                "id": ctx.frame[ctx.id_col].to_numpy(),
                "score": scores,
                "label": y,
                "set": np.where(test, "test", "train"),
            }
        )
        write_csv(pred, ctx.out_dir / "predictions.csv")
        ctx.state.predictions = pred
        out["trees"] = len(model.trees)
        for name, m in (("train", ~test), ("test", test)):
            if p.objective == sbt.Objective.BINARY and len(np.unique(y[m])) == 2:
                out[f"auc_{name}"] = round(metrics.auc(y[m], scores[m]), 6)
    else:
        pmodel = sbt.run_partner(
            s.sub("train"), x[train], feats, p, valid_x=vx, policy=DEFAULT_POLICY
        )
        sbt.run_predict_partner(s.sub("predict"), pmodel, x)
        out["splits"] = len(pmodel.records)
        ctx.state.model = pmodel
        sbt.save(pmodel, ctx.out_dir / MODEL_FILE)
        write_json(pmodel.importance(), ctx.out_dir / "importance.json")
    return out


def score_rows(ctx: StepContext, model: Any, label_holder: str) -> np.ndarray | None:
    """Joint scores of the current rows with a SecureBoost model (label holder only)."""
    x = ctx.frame[model.feature_names].to_numpy()
    if isinstance(model, sbt.LabelHolderModel):
        roles = {"label_holder": ctx.party}
        roles.update({f"partner{i}": q for i, q in enumerate(model.parties[1:], start=1)})
        return sbt.run_predict_label_holder(ctx.session.with_roles(roles), model, x)
    sbt.run_predict_partner(ctx.session.with_roles({"label_holder": label_holder}), model, x)
    return None
