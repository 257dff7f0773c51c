"""The ``split`` step: a reproducible train/test split decided by the label holder.

Runs :mod:`veil.ml.split`: the label holder draws the split (``test_size``,
``seed``, ``stratify``) and sends every partner the test-row mask of the aligned
rows; every party keeps it in ``ctx.state.split`` for later steps. Partners
learn which rows are test rows, nothing about labels. A party without data sits it out.

Parameters: ``test_size`` (default 0.3), ``seed`` (42), ``stratify`` (true),
``label_holder`` (default: the one party with a label column).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from veil.errors import ConfigError
from veil.jobs.context import StepContext
from veil.jobs.params import Checked, check_keys, label_holder_of, sitting_out
from veil.jobs.registry import register
from veil.jobs.spec import JobSpec
from veil.jobs.steps import _credit as c
from veil.ml import split as ml_split

KEYS = ("test_size", "seed", "stratify", "label_holder")


def validate(params: Mapping[str, object], job: JobSpec, field: str) -> Mapping[str, object]:
    check_keys(params, KEYS, field)
    seed = params.get("seed", 42)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{field}.seed", f"must be an integer >= 0, got {seed!r}", "e.g. 42")
    size = c.number(params, "test_size", field, 0.3, lo=0.0, hi=1.0)
    ml_split.SplitOptions(test_size=size)  # rejects 0 and 1
    out = {
        "test_size": size,
        "seed": seed,
        "stratify": c.flag(params, "stratify", field, True),
        "label_holder": label_holder_of(params, job, field),
    }
    sit_out = [p.name for p in job.parties if p.data is None]  # e.g. an SS-LR dealer
    return {**out, "sit_out": sit_out} if sit_out else out


@register("split", validate=validate)
def split(ctx: StepContext, params: Mapping[str, object]) -> dict[str, object]:
    """Train/test split of the aligned rows, drawn by the label holder (parties without
    data sit it out)."""
    sit_out = sitting_out(params)
    if ctx.party in sit_out:
        return {}
    s = c.session(ctx, params)
    s = s.among([p for p in s.parties if p not in sit_out])
    if c.is_label_holder(ctx, params):
        p = Checked(params)
        opts = ml_split.SplitOptions(
            p.get_float("test_size"), p.get_int("seed"), p.get_bool("stratify")
        )
        y = c.labels(ctx)
        result = ml_split.run_label_holder(s, y, opts)
        out: dict[str, Any] = {
            "event_rate_train": round(float(y[result.train_idx].mean()), 6),
            "event_rate_test": round(float(y[result.test_idx].mean()), 6),
        }
    else:
        result = ml_split.run_partner(s, len(ctx.frame))
        out = {}
    ctx.state.split = result
    out.update(n_train=len(result.train_idx), n_test=len(result.test_idx))
    return out
