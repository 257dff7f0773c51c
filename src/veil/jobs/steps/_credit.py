"""Helpers shared by the credit-risk steps (split, binning, select, evaluate, scorecard).

State these steps leave in ``ctx.state`` for later steps (every party, its own data):
  ``split``      :class:`veil.ml.split.Split` (test-row mask of the aligned rows)
  ``bins``       ``{column: Bins}`` of this party's own features
  ``binning``    label holder only: :class:`veil.ml.fed_binning.LabelHolderBinning`
  ``raw_frame``  this party's table before a WOE transform replaced its columns
  ``features``   this party's feature columns still in use (after ``select``)
A training step (``hetero_lr``) is expected to leave ``model`` (this party's
``PartyModel``) and, on the label holder, ``predictions`` (a DataFrame with
``id, score, label, set``) or ``predictions.csv`` in its output folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError
from veil.jobs.params import Checked

if TYPE_CHECKING:
    from veil.jobs.context import StepContext
    from veil.net.session import Session

LABEL_HOLDER = "label_holder"


def number(
    params: Mapping[str, object],
    key: str,
    field: str,
    default: float,
    *,
    lo: float | None = None,
    hi: float | None = None,
) -> float:
    """A float parameter within [lo, hi] (bounds optional)."""
    v = params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(f"{field}.{key}", f"must be a number, got {v!r}", f"e.g. {default}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ConfigError(f"{field}.{key}", f"must be in [{lo}, {hi}], got {v}", f"e.g. {default}")
    return float(v)


def flag(params: Mapping[str, object], key: str, field: str, default: bool) -> bool:
    v = params.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"{field}.{key}", f"must be true or false, got {v!r}")
    return v


def session(ctx: StepContext, params: Mapping[str, object]) -> Session:
    """The step's session with the label holder bound to its role."""
    return ctx.session.with_roles({LABEL_HOLDER: Checked(params).get_str(LABEL_HOLDER)})


def is_label_holder(ctx: StepContext, params: Mapping[str, object]) -> bool:
    return bool(ctx.party == params["label_holder"])


def labels(ctx: StepContext) -> npt.NDArray[np.int64]:
    """The label column as 0/1, or a clear error naming it."""
    from veil.ml.labels import check_labels

    col = ctx.label_col
    if col is None or col not in ctx.frame.columns:
        raise ConfigError(
            f"parties.{ctx.party}.label",
            f"label column '{col}' is missing",
            "name an existing 0/1 column",
        )
    return check_labels(ctx.frame[col].to_numpy(), f"label column '{col}'")


def feature_columns(ctx: StepContext) -> list[str]:
    """This party's feature columns: ``ctx.state.features`` or every column but id/label."""
    if ctx.state.features is not None:
        return list(ctx.state.features)
    skip = {ctx.id_col, ctx.label_col}
    return [c for c in ctx.frame.columns if c not in skip]


def train_rows(ctx: StepContext) -> npt.NDArray[np.int64]:
    """Row indices to fit on: the split's training rows, or every row."""
    split = ctx.state.split
    if split is None:
        return np.arange(len(ctx.frame), dtype=np.int64)
    if len(split.test_mask) != len(ctx.frame):
        raise ConfigError("split", "the table changed size after the split", "split last")
    return split.train_idx


def column(ctx: StepContext, name: str, raw: bool = False) -> npt.NDArray[np.float64]:
    """One numeric column (from the pre-WOE table if ``raw``)."""
    import pandas as pd

    frame = ctx.state.raw_frame if raw and ctx.state.raw_frame is not None else ctx.frame
    if name not in frame.columns:
        raise ConfigError(f"column '{name}'", f"is not in {ctx.party}'s table", "check the data")
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
