"""The ``select`` step: keep features by information value, across parties.

Runs :mod:`veil.ml.select` on the IVs of the ``binning`` step: the label holder
ranks every feature (partners' under their revealed names or anonymous ids),
keeps those with IV >= ``min_iv`` and at most ``top_k`` in all, and tells each
partner which of its own columns stay. Every party then drops its other feature
columns from its table, so the next step (``hetero_lr``) trains on the kept ones.

Parameters: ``min_iv`` (0.02), ``top_k`` (no limit), ``label_holder``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from veil.errors import ConfigError
from veil.fileio import write_csv
from veil.jobs.context import StepContext
from veil.jobs.params import Checked, check_keys, label_holder_of, positive_int
from veil.jobs.registry import register
from veil.jobs.spec import JobSpec
from veil.jobs.steps import _credit as c
from veil.ml import select as ml_select

KEYS = ("min_iv", "top_k", "label_holder")


def validate(params: Mapping[str, object], job: JobSpec, field: str) -> Mapping[str, object]:
    check_keys(params, KEYS, field)
    return {
        "min_iv": c.number(params, "min_iv", field, 0.02, lo=0.0),
        "top_k": positive_int(params.get("top_k"), f"{field}.top_k"),
        "label_holder": label_holder_of(params, job, field),
    }


@register("select", validate=validate)
def select(ctx: StepContext, params: Mapping[str, object]) -> dict[str, object]:
    """Keep the features with the highest IV; each party drops its other columns."""
    if ctx.state.bins is None or ctx.state.features is None:
        raise ConfigError("steps.select", "needs the IVs of a binning step", "add binning first")
    s = c.session(ctx, params)
    names = list(ctx.state.features)
    out: dict[str, Any] = {}
    if c.is_label_holder(ctx, params):
        if ctx.state.binning is None:
            raise ConfigError("steps.select", "the label holder has no IVs", "add binning first")
        p = Checked(params)
        opts = ml_select.SelectOptions(p.get_float("min_iv"), p.opt_int("top_k"))
        sel = ml_select.run_label_holder(s, ctx.state.binning, opts)
        kept = sel.kept_of(ctx.party)
        rows = [{"party": b.party, "feature": b.name, "iv": b.iv, "kept": True} for b in sel.kept]
        rows += [
            {"party": b.party, "feature": b.name, "iv": b.iv, "kept": False} for b in sel.dropped
        ]
        write_csv(pd.DataFrame(rows), ctx.out_dir / "selection.csv")
        out["kept"] = [b.key for b in sel.kept]
    else:
        kept = ml_select.run_partner(s, names)
    dropped = [n for n in names if n not in kept]
    ctx.frame = ctx.frame.drop(columns=dropped)
    ctx.state.features = kept
    out["kept_here"] = len(kept)
    return out
