"""A test-only training step for the dashboard tests: ``_scores`` gives the label
holder train/test scores that follow its label (with noise) and a split-gain
importance of its own two features, as a training step would, so the real
``evaluate`` step can write the model report the dashboard draws. Registered in
the workers through ``VEIL_STEP_MODULES=tests.web.fake_model``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from veil.fileio import write_csv, write_json
from veil.jobs import StepContext, register


@register("_scores")
def scores(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
    """Label holder only: noisy scores of its label; partners do nothing."""
    if ctx.label_col is None:
        return {}
    rng = np.random.default_rng(7)
    y = ctx.frame[ctx.label_col].astype(int).to_numpy()
    score = 1 / (1 + np.exp(-(1.5 * (2 * y - 1) + rng.normal(0, 1.5, len(y)))))
    n_train = int(0.6 * len(y))
    ctx.state.predictions = pd.DataFrame(
        {
            "id": ctx.frame[ctx.id_col].astype(str).to_numpy(),
            "score": score,
            "label": y,
            "set": ["train"] * n_train + ["test"] * (len(y) - n_train),
        }
    )
    write_csv(ctx.state.predictions, ctx.out_dir / "predictions.csv")
    write_json(
        {"x0": {"split": 5, "gain": 2.5}, "x1": {"split": 2, "gain": 0.8}},
        ctx.out_dir / "importance.json",
    )
    return {"rows": len(y)}
