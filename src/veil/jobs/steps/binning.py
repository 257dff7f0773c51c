"""The ``binning`` step: bins, WOE and IV of every feature of every party.

Runs :mod:`veil.ml.fed_binning` on the training rows (``split`` step) or all
rows: the label holder bins its own columns in plaintext and every partner's
under Paillier/OU-encrypted labels (that module lists what each party learns).
With ``woe_transform: true`` the label holder sends each partner the WOE of its
own bins and every party replaces its feature columns (all rows) by their WOE,
keeping the raw table in ``ctx.state.raw_frame`` for the scorecard.

Outputs: the label holder writes ``iv.csv`` (party, feature, IV, bins) and
``bins.json`` (its own bins; per-bin counts/events/WOE of partners' features and,
for chi-merge / monotonic, the merge plan over the partner's fine bins); each
partner writes ``bins.json`` with its own bins: with ``woe_transform`` the final
bins and their WOE, else its label-free bins (for chi-merge / monotonic the fine
bins before the label-driven merge, which stays with the label holder).

Parameters: ``method`` (quantile | equal_width | chi_merge | monotonic),
``n_bins`` (10), ``fine_bins`` (20), ``min_bin_size`` (50), ``chi_threshold``,
``he`` (paillier | ou), ``key_bits`` (2048), ``woe_transform`` (false),
``reveal_names`` (parties that let the label holder see their column names; a
partner reveals only if its own job file lists it), ``features`` (per party,
default every column but id and label), ``label_holder``. The HE key must meet
:data:`veil.policy.DEFAULT_POLICY` (a job cannot relax it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from veil.crypto.he import HEScheme
from veil.errors import ConfigError
from veil.fileio import write_csv, write_json
from veil.jobs.context import StepContext
from veil.jobs.params import Checked, check_keys, label_holder_of, party_list, positive_int
from veil.jobs.registry import register
from veil.jobs.spec import JobSpec
from veil.jobs.steps import _credit as c
from veil.ml import fed_binning
from veil.ml.binning import BinMethod, BinningOptions, Bins
from veil.ml.fed_binning import FedBinningOptions
from veil.policy import DEFAULT_POLICY

KEYS = (
    "method", "n_bins", "fine_bins", "min_bin_size", "chi_threshold", "he", "key_bits",
    "woe_transform", "reveal_names", "features", "label_holder",
)  # fmt: skip


def validate(params: Mapping[str, object], job: JobSpec, field: str) -> Mapping[str, object]:
    check_keys(params, KEYS, field)
    n_bins = positive_int(params.get("n_bins"), f"{field}.n_bins", default=10)
    fine = positive_int(params.get("fine_bins"), f"{field}.fine_bins", default=max(20, n_bins or 0))
    chi = params.get("chi_threshold")
    # the options' __post_init__ check and convert method and he (hence the loose dict)
    loose: dict[str, Any] = {
        "method": params.get("method", "quantile"),
        "he": params.get("he", "paillier"),
    }
    opts = FedBinningOptions(
        BinningOptions(
            method=loose["method"],
            n_bins=n_bins or 10,
            fine_bins=fine or 20,
            min_bin_size=positive_int(
                params.get("min_bin_size"), f"{field}.min_bin_size", default=50
            )
            or 50,
            chi_threshold=None if chi is None else c.number(params, "chi_threshold", field, 3.841),
        ),
        he=loose["he"],
        key_bits=positive_int(params.get("key_bits"), f"{field}.key_bits", default=2048) or 2048,
    )
    DEFAULT_POLICY.check_key_bits(opts.he.value, opts.key_bits, f"{field}.key_bits")
    features = params.get("features")
    bad = not isinstance(features, dict) or any(
        p not in job.party_names or not isinstance(v, list) or not v for p, v in features.items()
    )
    if features is not None and bad:
        raise ConfigError(
            f"{field}.features",
            "must map party names to column lists",
            "e.g. {bank: [x0, x1], bureau: [x3]}",
        )
    reveal = params.get("reveal_names")
    b = opts.binning
    return {
        "method": b.method.value,
        "n_bins": b.n_bins,
        "fine_bins": b.fine_bins,
        "min_bin_size": b.min_bin_size,
        "chi_threshold": b.chi_threshold,
        "he": opts.he.value,
        "key_bits": opts.key_bits,
        "woe_transform": c.flag(params, "woe_transform", field, False),
        "reveal_names": []
        if reveal is None
        else list(party_list(reveal, job, f"{field}.reveal_names")),
        "features": features,
        "label_holder": label_holder_of(params, job, field),
    }


def _options(params: Mapping[str, object]) -> FedBinningOptions:
    p = Checked(params)
    return FedBinningOptions(
        BinningOptions(
            BinMethod(p.get_str("method")),
            p.get_int("n_bins"),
            p.get_int("fine_bins"),
            p.get_int("min_bin_size"),
            p.opt_float("chi_threshold"),
        ),
        he=HEScheme(p.get_str("he")),
        key_bits=p.get_int("key_bits"),
        share_woe=p.get_bool("woe_transform"),
    )


def _bins_json(bins: Mapping[str, Bins]) -> list[dict[str, Any]]:
    return [
        {
            "feature": name,
            "bins": b.labels(),
            "edges": b.edges.tolist(),
            "counts": b.counts.tolist(),
            "events": None if b.events is None else b.events.tolist(),
            "woe": None if b.woe is None else b.woe.tolist(),
            "iv": b.iv,
        }
        for name, b in bins.items()
    ]


@register("binning", validate=validate)
def binning(ctx: StepContext, params: Mapping[str, object]) -> dict[str, object]:
    """Federated binning with WOE/IV; optional WOE transform of every party's columns."""
    s = c.session(ctx, params)
    opts = _options(params)
    p = Checked(params)
    chosen = p.mapping("features") if params.get("features") else {}
    names = (
        list(Checked(chosen, "params.features").strs(ctx.party))
        if chosen.get(ctx.party)
        else c.feature_columns(ctx)
    )
    rows = c.train_rows(ctx)
    cols = {n: c.column(ctx, n)[rows] for n in names}
    out: dict[str, Any] = {"features": len(names)}
    if c.is_label_holder(ctx, params):
        res = fed_binning.run_label_holder(
            s, c.labels(ctx)[rows], cols, opts, policy=DEFAULT_POLICY
        )
        bins = res.own
        ctx.state.binning = res
        table = pd.DataFrame(
            [
                {"party": b.party, "feature": b.name, "iv": b.iv, "bins": len(b.counts)}
                for b in res.stats
            ]
        ).sort_values("iv", ascending=False)
        write_csv(table, ctx.out_dir / "iv.csv")
        partners = [
            {"party": b.party, "feature": b.name, "counts": b.counts.tolist(),
             "events": b.events.tolist(), "woe": b.woe.tolist(), "iv": b.iv,
             "merge_starts": None if b.starts is None else b.starts.tolist()}
            for b in res.stats if b.party != ctx.party
        ]  # fmt: skip
        write_json({"own": _bins_json(bins), "partners": partners}, ctx.out_dir / "bins.json")
        out["iv"] = {b.key: round(b.iv, 6) for b in res.stats}
    else:
        reveal = ctx.party in p.strs("reveal_names")
        bins = fed_binning.run_partner(
            s, cols, opts.binning, reveal_names=reveal, policy=DEFAULT_POLICY
        )
        write_json({"own": _bins_json(bins)}, ctx.out_dir / "bins.json")
    ctx.state.bins = bins
    ctx.state.features = list(names)
    if p.get_bool("woe_transform"):
        if ctx.state.raw_frame is None:
            ctx.state.raw_frame = ctx.frame.copy()
        frame = ctx.frame.copy()
        for n, b in bins.items():
            frame[n] = b.woe_transform(c.column(ctx, n))
        ctx.frame = frame
        out["woe_transformed"] = True
    return out
