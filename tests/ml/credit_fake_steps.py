"""Test-only training step standing in for ``hetero_lr`` in job tests: the label holder
fits a plaintext LR on its own WOE columns (training rows); partners get zero
coefficients. It leaves ``model`` and ``predictions`` as ``hetero_lr`` does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from veil.fileio import write_csv
from veil.jobs import StepContext, register
from veil.ml.scorecard import LinearPart


@register("_local_lr")
def local_lr(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
    names = list(ctx.state.features)
    X = ctx.frame[names].to_numpy(dtype=np.float64)
    if ctx.label_col is None:
        ctx.state.model = LinearPart(tuple(names), np.zeros(len(names)))
        return {}
    y = ctx.frame[ctx.label_col].to_numpy()
    split = ctx.state.split
    lr = LogisticRegression(max_iter=1000).fit(X[split.train_idx], y[split.train_idx])
    ctx.state.model = LinearPart(tuple(names), lr.coef_[0], float(lr.intercept_[0]))
    df = pd.DataFrame(
        {
            "id": ctx.frame[ctx.id_col],
            "score": lr.predict_proba(X)[:, 1],
            "label": y,
            "set": split.set_names(),
        }
    )
    ctx.state.predictions = df
    write_csv(df, ctx.out_dir / "predictions.csv")
    return {}
