"""The ``stats`` step: column statistics over the joined rows of every party.

Runs :mod:`veil.ml.ss_stats` (what each party learns is listed there) on this party's
feature columns of the aligned rows (run ``psi`` first; ``ctx.state.features`` after
``select``, else every column but id and label). Each party writes what it learned to
``stats.json`` in its output folder and, if it learned the correlation matrix, a heat
map ``correlation.png``.

Parameters:
``reveal_to``  who learns what: ``{bank: [summary, correlation, vif], partner: [vif]}``,
               or a list of parties that learn all three. ``summary`` = count, mean,
               variance and quantiles of every party's columns; ``correlation`` = the
               Pearson matrix across all parties' columns; ``vif`` = VIF per column
               (computed from the correlation matrix, so some party must learn that).
               A party always knows its own columns' summary.
``quantiles``  default ``[0.25, 0.5, 0.75]``.
``parties``    the data parties (default: every party but the dealer).
``dealer``     a party without data that makes the Beaver triples; absent: each pair
               of data parties makes its own under ``he`` (``ou``/``paillier``) with
               ``key_bits`` keys (slower, no third party).
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO

import numpy as np

from veil.errors import ConfigError
from veil.fileio import write_atomic, write_json
from veil.jobs.context import StepContext
from veil.jobs.params import Checked, check_keys, party_list
from veil.jobs.registry import register
from veil.jobs.spec import JobSpec, suggest
from veil.jobs.steps import _credit as c
from veil.ml import ss_stats
from veil.policy import DEFAULT_POLICY

KEYS = ("reveal_to", "quantiles", "parties", "dealer", "he", "key_bits")
STATS_FILE = "stats.json"
HEATMAP = "correlation.png"


def validate(params: Mapping[str, object], job: JobSpec, field: str) -> Mapping[str, object]:
    check_keys(params, KEYS, field)
    dealer = params.get("dealer")
    if dealer is not None and dealer not in job.party_names:
        raise ConfigError(
            f"{field}.dealer", f"unknown party '{dealer}'", suggest(str(dealer), job.party_names)
        )
    default = [p for p in job.party_names if p != dealer]
    parties = party_list(params.get("parties"), job, f"{field}.parties", default=default)
    raw = params.get("reveal_to")
    if raw is None:
        raise ConfigError(
            f"{field}.reveal_to",
            "missing",
            "name who learns what, e.g. {bank: [summary, correlation, vif]}",
        )
    if isinstance(raw, list | str):
        reveal = {p: list(ss_stats.STATS) for p in party_list(raw, job, f"{field}.reveal_to")}
    elif isinstance(raw, Mapping):
        reveal = {}
        for p, what in raw.items():
            if p not in job.party_names:
                raise ConfigError(
                    f"{field}.reveal_to", f"unknown party '{p}'", suggest(str(p), job.party_names)
                )
            items = [what] if isinstance(what, str) else what
            if not isinstance(items, list) or not all(isinstance(w, str) for w in items):
                raise ConfigError(
                    f"{field}.reveal_to.{p}", "must be a list", f"of {list(ss_stats.STATS)}"
                )
            reveal[str(p)] = items
    else:
        raise ConfigError(f"{field}.reveal_to", "must be a mapping or a list of parties")
    qs = params.get("quantiles", [0.25, 0.5, 0.75])
    if not isinstance(qs, list) or not all(
        isinstance(q, int | float) and not isinstance(q, bool) for q in qs
    ):
        raise ConfigError(
            f"{field}.quantiles", f"must be a list of numbers, got {qs!r}", "e.g. [0.5]"
        )
    he = params.get("he", "ou")
    bits = params.get("key_bits", 2048)
    if not isinstance(he, str) or he not in ("ou", "paillier"):
        raise ConfigError(f"{field}.he", f"unknown scheme {he!r}", "use ou or paillier")
    DEFAULT_POLICY.check_key_bits(he, bits, f"{field}.key_bits")
    out = {
        "reveal_to": reveal,
        "quantiles": [float(q) for q in qs],
        "parties": list(parties),
        "dealer": dealer,
        "he": he,
        "key_bits": bits,
    }
    try:
        _options(out)
    except ConfigError as e:
        raise ConfigError(f"{field}.{e.field.split('.', 1)[-1]}", e.problem, e.fix) from None
    return out


def _options(params: Mapping[str, object]) -> ss_stats.StatsOptions:
    p = Checked(params)
    reveal = Checked(p.mapping("reveal_to"), "params.reveal_to")
    return ss_stats.StatsOptions(
        parties=p.strs("parties"),
        reveal_to={k: reveal.strs(k) for k in reveal.params},
        quantiles=p.floats("quantiles"),
        dealer=p.opt_str("dealer"),
        he=p.get_str("he"),
        key_bits=p.get_int("key_bits"),
    )


@register("stats", validate=validate)
def stats(ctx: StepContext, params: Mapping[str, object]) -> dict[str, object]:
    """Per-column statistics, the Pearson matrix and VIF across all parties' columns."""
    opts = _options(params)
    if ctx.party == opts.dealer:
        ss_stats.run_dealer(ctx.session, opts)
        return {"role": "dealer"}
    if ctx.party not in opts.parties:
        return {}
    names = c.feature_columns(ctx)
    X = (
        np.column_stack([c.column(ctx, n) for n in names])
        if names
        else np.zeros((len(ctx.frame), 0))
    )
    ids = ctx.frame[ctx.id_col].tolist()
    res = ss_stats.run_party(ctx.session, ids, names, X, opts, policy=DEFAULT_POLICY)
    write_json(res.to_json(), ctx.out_dir / STATS_FILE)
    if res.correlation is not None:
        write_atomic(ctx.out_dir / HEATMAP, heatmap_png(res.columns, res.correlation))
    learned = [k for k in ss_stats.STATS if k in opts.reveal_to.get(ctx.party, ())]
    return {"columns": len(names), "rows": res.rows, "learned": learned}


def heatmap_png(columns: list[str], R: np.ndarray) -> bytes:
    """The correlation matrix as a heat map (matplotlib's Agg canvas, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = len(columns)
    side = min(4.0 + 0.32 * k, 24.0)
    fig = Figure(figsize=(side, side * 0.85), dpi=100, layout="tight")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(R, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    ax.set_xticks(range(k), columns, rotation=90, fontsize=7)
    ax.set_yticks(range(k), columns, fontsize=7)
    ax.set_title("Pearson correlation")
    fig.colorbar(im, ax=ax, shrink=0.8)
    buf = BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
