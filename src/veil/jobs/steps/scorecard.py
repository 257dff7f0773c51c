"""The ``scorecard`` step: points per bin from the LR on WOE features, joint scores.

Runs :mod:`veil.ml.scorecard` with this party's bins (``binning`` step with
``woe_transform: true``) and its own part of the trained model
(``ctx.state.model``, left by ``hetero_lr``). Each party writes
``scorecard.csv`` (feature, bin, WOE, points) of its own features only; the
partner then sends its per-row point sums to the label holder, which writes
``scores.csv`` (``id, score`` plus ``label`` and ``set`` where known).
What each party learns is listed in :mod:`veil.ml.scorecard`.

Parameters: ``base_score`` (600), ``pdo`` (20), ``base_odds`` (50, good:bad),
``round_points`` (false), ``label_holder``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from veil.errors import ConfigError
from veil.fileio import write_csv
from veil.jobs.context import StepContext
from veil.jobs.params import Checked, check_keys, label_holder_of
from veil.jobs.registry import register
from veil.jobs.spec import JobSpec
from veil.jobs.steps import _credit as c
from veil.ml import scorecard as ml_card

KEYS = ("base_score", "pdo", "base_odds", "round_points", "label_holder")


def validate(params: Mapping[str, object], job: JobSpec, field: str) -> Mapping[str, object]:
    check_keys(params, KEYS, field)
    opts = ml_card.ScorecardOptions(
        c.number(params, "base_score", field, 600.0),
        c.number(params, "pdo", field, 20.0),
        c.number(params, "base_odds", field, 50.0),
        c.flag(params, "round_points", field, False),
    )
    return {
        "base_score": opts.base_score,
        "pdo": opts.pdo,
        "base_odds": opts.base_odds,
        "round_points": opts.round_points,
        "label_holder": label_holder_of(params, job, field),
    }


@register("scorecard", validate=validate)
def scorecard(ctx: StepContext, params: Mapping[str, object]) -> dict[str, object]:
    """Points per bin for this party's features; the label holder gets every row's score."""
    model = ctx.state.model
    bins = ctx.state.bins
    if model is None or bins is None:
        raise ConfigError(
            "steps.scorecard",
            "needs bins with WOE and a trained model",
            "run binning (woe_transform: true) and hetero_lr before scorecard",
        )
    p = Checked(params)
    opts = ml_card.ScorecardOptions(
        p.get_float("base_score"),
        p.get_float("pdo"),
        p.get_float("base_odds"),
        p.get_bool("round_points"),
    )
    part = model if isinstance(model, ml_card.LinearPart) else ml_card.LinearPart.of(model)
    holder = c.is_label_holder(ctx, params)
    if holder and part.intercept is None:
        raise ConfigError("model", "the label holder's model part has no intercept", "retrain")
    card = ml_card.build(bins, part, opts)
    rows = [
        {"feature": f.name, "bin": label, "woe": woe, "points": pts}
        for f in card.features
        for label, woe, pts in f.table()
    ]
    write_csv(pd.DataFrame(rows), ctx.out_dir / "scorecard.csv")
    cols = {f.name: c.column(ctx, f.name, raw=True) for f in card.features}
    s = c.session(ctx, params)
    out: dict[str, Any] = {"features_here": len(card.features)}
    if not holder:
        ml_card.run_partner(s, card, cols)
        return out
    scores = ml_card.run_label_holder(s, card, cols)
    df = pd.DataFrame({"id": ctx.frame[ctx.id_col].to_numpy(), "score": scores})
    if ctx.label_col in ctx.frame.columns:
        df["label"] = ctx.frame[ctx.label_col].to_numpy()
    split = ctx.state.split
    if split is not None:
        df["set"] = split.set_names()
    write_csv(df, ctx.out_dir / "scores.csv")
    out.update(
        base_points=round(card.base_points, 4),
        score_mean=round(float(np.mean(scores)), 4),
        score_min=round(float(np.min(scores)), 4),
        score_max=round(float(np.max(scores)), 4),
    )
    return out
