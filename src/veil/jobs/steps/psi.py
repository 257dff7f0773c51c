"""The ``psi`` step: align the parties' rows on the ids they share.

Runs :func:`veil.protocols.psi.run_psi` on this party's ids: two-party ECDH, KKRT or RR22,
or, with three or more parties, :mod:`veil.protocols.psi.multiparty` (the receivers
learn the intersection of all sets and nothing about any pairwise one). Each party named
in ``result_to`` keeps only its rows in the intersection, sorted by id (the common
ids are the same strings at every receiver, so the rows line up for the later
vertical steps, and the same data give the same row order, hence the same ``split``,
in every run: the protocol's own order depends on its fresh keys), and gets
``psi.csv``: those rows, first occurrence of each id. What each party learns is what the PSI
protocol reveals: the receivers learn the intersection; nobody learns ids
outside it. A party listed without ``data:`` (e.g. an SS-LR dealer) sits the step out;
the others run PSI among themselves (:meth:`veil.net.session.Session.among`).
A party whose data is a Parquet folder or SQL table (:mod:`veil.jobs.sources`) streams
its ids partition by partition (:class:`veil.protocols.psi.ecdh.IdChunks`; ECDH and
RR22 hold no id in memory, only fixed-width values, and keep those in bucket files under
the system's temporary folder, ``TMPDIR``, so their memory does not grow with the row
count: ``PsiParams.spill_dir``) and then reads only the intersection's rows.

Parameters: ``result_to`` (parties that learn the intersection; default all with data),
``batch_size`` (ids per message), ``threads`` (worker threads, default all cores),
``interconnect`` (true: run the PPCA 9-2023 interconnection variant of the protocol,
:mod:`veil.protocols.interconnect`, same result; default false), ``protocol``
(``rr22``: VOLE-and-OKVS PSI, :mod:`veil.protocols.psi.rr22`, the fastest and the
default between two Veil parties; ``kkrt``: OT-extension PSI,
:mod:`veil.protocols.psi.kkrt`, Veil to Veil; ``ecdh`` on ristretto255, the default
with three or more parties and with ``interconnect``, there on the standard's
Curve25519 wire that SecretFlow speaks; a party's ``engine`` scales out ECDH's kernels).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from veil.crypto import ecc
from veil.errors import ConfigError
from veil.fileio import write_csv
from veil.jobs.context import StepContext
from veil.jobs.params import Checked, check_keys, party_list, positive_int, sitting_out
from veil.jobs.registry import register
from veil.jobs.spec import JobSpec
from veil.policy import DEFAULT_POLICY
from veil.protocols.psi import Protocol, PsiParams, run_psi
from veil.protocols.psi.ecdh import IdChunks

KEYS = ("result_to", "batch_size", "threads", "interconnect", "protocol")
OUTPUT_FILE = "psi.csv"


def validate(params: Mapping[str, object], job: JobSpec, field: str) -> Mapping[str, object]:
    """Check the psi parameters against the job (known names; KKRT, RR22 and interconnection
    between two parties only)."""
    check_keys(params, KEYS, field)
    sit_out = [p.name for p in job.parties if p.data is None]  # e.g. an SS-LR dealer
    data_parties = [p for p in job.party_names if p not in sit_out]
    interconnect = _flag(params.get("interconnect", False), f"{field}.interconnect")
    out: dict[str, Any] = {
        "result_to": list(
            party_list(params.get("result_to"), job, f"{field}.result_to", default=data_parties)
        ),
        "batch_size": positive_int(params.get("batch_size"), f"{field}.batch_size", default=4096),
        "threads": positive_int(params.get("threads"), f"{field}.threads"),
        "interconnect": interconnect,
        "protocol": _protocol(
            params.get("protocol", default_protocol(data_parties, interconnect)),
            params,
            f"{field}.protocol",
        ),
    }
    named = [p for p in out["result_to"] if p in sit_out]
    if named:
        raise ConfigError(
            f"{field}.result_to", f"{named} have no data", "leave parties without data out"
        )
    if sit_out:  # parties without data take no part in PSI
        out["sit_out"] = sit_out
    if len(data_parties) > 2 and (out["protocol"] != Protocol.ECDH or out["interconnect"]):
        what = "interconnect" if out["interconnect"] else "protocol"
        raise ConfigError(
            f"{field}.{what}",
            f"{'interconnection' if what == 'interconnect' else out['protocol']} PSI runs "
            f"between two parties, this job has {len(data_parties)} with data",
            "use protocol ecdh (the default) for three or more parties",
        )
    return out


def default_protocol(data_parties: list[str], interconnect: bool) -> str:
    """RR22 between two Veil parties (the fastest: benchmarks/RESULTS.md, "RR22 PSI");
    ECDH with three or more parties or on the interconnection wire. It depends only on
    what every party's copy of the job shares, so all pick the same."""
    if len(data_parties) == 2 and not interconnect:
        return Protocol.RR22.value
    return Protocol.ECDH.value


def _protocol(value: Any, params: Mapping[str, object], field: str) -> str:
    names = [p.value for p in Protocol]
    if value not in names:
        raise ConfigError(
            field, f"{value!r} is not a PSI protocol", f"use one of {', '.join(names)}"
        )
    if value != Protocol.ECDH and params.get("interconnect"):
        raise ConfigError(
            field, "the interconnection wire speaks ECDH-PSI only", "drop interconnect or use ecdh"
        )
    return str(value)


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, f"{value!r} is not true or false", "write true or false")
    return value


@register("psi", validate=validate)
def psi(ctx: StepContext, params: Mapping[str, object]) -> dict[str, object]:
    """Private set intersection on the id column; receivers keep the aligned rows."""
    sit_out = sitting_out(params)
    if ctx.party in sit_out:
        return {"sat_out": True}
    session = ctx.session.among([p for p in ctx.session.parties if p not in sit_out])
    c = Checked(params)
    ids: Sequence[str] | IdChunks
    spill_dir = None
    if ctx.table is not None:  # a Parquet folder or SQL table: the ids stream by partition
        ids = IdChunks(ctx.table.ids())
        spill_dir = tempfile.gettempdir()  # per-id state in files there (TMPDIR picks it)
    else:
        ids = ctx.frame[ctx.id_col].astype(str).tolist()
        if not ids and session.me in c.strs("result_to"):
            raise ConfigError(
                "psi.result_to",
                f"party '{session.me}' holds no data (its table has no rows)",
                "give it a data file with rows, or leave it out of result_to",
            )
    p = PsiParams(
        result_to=c.strs("result_to"),
        batch_size=c.get_int("batch_size"),
        threads=c.opt_int("threads"),
        protocol=Protocol(c.get_str("protocol")),
        spill_dir=spill_dir,
    )
    if params.get("interconnect"):
        from veil.protocols.interconnect.party import run_psi_interconnect

        DEFAULT_POLICY.check_suite(ecc.HASH_AS_X.name)  # the interconnection suite
        res = run_psi_interconnect(session, list(ids), p)
    else:
        res = run_psi(session, ids, p)
    out: dict[str, Any] = {
        "n_input": res.n_input,
        "duplicates_dropped": res.n_input - res.n_distinct,
    }
    if res.size is not None:
        out["intersection_size"] = int(res.size)
    if res.indices is not None:
        idx = np.asarray(res.indices, dtype=np.int64)
        if ctx.table is not None:  # read only the rows of the intersection
            rows = ctx.table.take(idx)
            rows.attrs.update(ctx.frame.attrs)
            ctx.frame, ctx.table = rows, None
            idx = np.arange(len(rows))
        by_id = np.argsort(ctx.frame[ctx.id_col].to_numpy(dtype=str)[idx], kind="stable")
        ctx.frame = ctx.frame.iloc[idx[by_id]].reset_index(drop=True)  # reproducible order
        write_csv(ctx.frame, ctx.out_dir / OUTPUT_FILE)
        ctx.state.aligned = True
        out["intersection_size"] = len(ctx.frame)
    return out
