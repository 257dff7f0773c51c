"""The ``predict`` step: joint scoring of the current rows with a trained vertical model.

Works with the model a training step of this job left (``hetero_lr`` or
``secureboost``), or with each party's saved model file: ``model:
models/{party}/model.json`` (``{party}`` becomes the party's name; each party reads
only its own part). Each party computes its share on its own columns; only the label
holder learns the scores, written to its ``predictions.csv`` (``id, score``, plus
``label`` where the label holder's table has one, ``set`` where a split is known) and
left in ``ctx.state`` for ``evaluate``. Typical use: score a marketing list or a batch
of loan applications after ``psi`` has aligned them.

Parameters: ``model`` (optional path, see above), ``label_holder`` (default: the one
party with a label column).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from veil.errors import ConfigError
from veil.fileio import write_csv
from veil.jobs.context import StepContext
from veil.jobs.params import check_keys, label_holder_of
from veil.jobs.registry import register
from veil.jobs.spec import JobSpec
from veil.jobs.steps import hetero_lr as lr_step
from veil.jobs.steps import secureboost as sbt_step
from veil.ml import secureboost as sbt
from veil.ml.lr import MODEL_FORMAT as LR_FORMAT
from veil.ml.lr import PartyModel, load_model
from veil.ml.secureboost.model import FORMAT as SBT_FORMAT

PREDICTIONS = "predictions.csv"
FIELD = "steps.predict.model"


def validate(params: Mapping[str, object], job: JobSpec, field: str) -> Mapping[str, object]:
    check_keys(params, ("model", "label_holder"), field)
    model = params.get("model")
    if model is not None and not isinstance(model, str):
        raise ConfigError(f"{field}.model", "must be a path", "e.g. models/{party}/model.json")
    return {"model": model, "label_holder": label_holder_of(params, job, field, need_label=False)}


def _load(path: Path) -> Any:
    """This party's saved model, LR or SecureBoost, told apart by the file's ``format``."""
    try:
        fmt = json.loads(path.read_text()).get("format")
    except FileNotFoundError:
        raise ConfigError(
            "steps.predict.model", f"no model file at {path}", "train first"
        ) from None
    except (json.JSONDecodeError, AttributeError) as e:
        raise ConfigError(FIELD, f"{path} is not a Veil model ({e})") from None
    if fmt == LR_FORMAT:
        return load_model(path)
    if fmt == SBT_FORMAT:
        return sbt.load(path)
    raise ConfigError(
        "steps.predict.model",
        f"{path} has unknown format {fmt!r}",
        "use a hetero_lr or secureboost model",
    )


@register("predict", validate=validate)
def predict(ctx: StepContext, params: Mapping[str, object]) -> dict[str, object]:
    """Score every current row with this party's part of the model; scores to the label holder."""
    path = params.get("model")
    model = _load(Path(str(path).replace("{party}", ctx.party))) if path else ctx.state.model
    lh = str(params["label_holder"])
    if isinstance(model, PartyModel):
        scores = lr_step.score_rows(ctx, model, lh)
    elif isinstance(model, sbt.LabelHolderModel | sbt.PartnerModel):
        scores = sbt_step.score_rows(ctx, model, lh)
    else:
        raise ConfigError(
            FIELD,
            "no model to score with",
            "run hetero_lr or secureboost first, or name the model files",
        )
    if scores is None:
        return {}
    df = pd.DataFrame({"id": ctx.frame[ctx.id_col].to_numpy(), "score": scores})
    if ctx.label_col in ctx.frame.columns and not ctx.frame[ctx.label_col].isna().any():
        df["label"] = ctx.frame[ctx.label_col].to_numpy().astype(int)
    split = ctx.state.split
    if split is not None and len(split.test_mask) == len(df):
        df["set"] = split.set_names()
    write_csv(df, ctx.out_dir / PREDICTIONS)
    ctx.state.predictions = df
    return {
        "rows_scored": len(df),
        "mean_score": round(float(np.mean(scores)), 6) if len(df) else None,
    }
