"""Read-only API views for people: who am I, the proposal in readable form, each
party's progress, this node's run report and log, the event log, the policy and
the audit log's verification status.

The dashboard (:mod:`veil.web`) calls only these and the endpoints of
:mod:`veil.node.api`; the CLI reaches every one of them too (``veil job proposal``,
``veil node events``, ...). Data and model artifacts (run report, worker log,
model report) need the operator role: an auditor gets 403 on them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends

from veil.errors import NetworkError, VeilError
from veil.node.api_report import model_report, run_report
from veil.node.config import Rule
from veil.node.jobfile import NodeJob, parse_node_job
from veil.node.model import POLICY, VoteState
from veil.node.policy import evaluate
from veil.node.service import NodeService, outputs_dir

LOG_TAIL = 64 * 1024  # bytes of the worker log an operator sees
EVENTS_MAX = 5000
PARTY_TIMEOUT = 3.0


def rule_json(i: int, r: Rule) -> dict[str, object]:
    """One ``[[policy.approve]]`` rule, numbered from 1 as the TOML file reads."""
    return {
        "rule": i + 1,
        "partners": list(r.partners),
        "steps": list(r.steps),
        "datasets": list(r.datasets),
        "columns": None if r.columns is None else list(r.columns),
        "recipients": None if r.recipients is None else list(r.recipients),
    }


def step_recipients(nj: NodeJob) -> list[dict[str, object]]:
    """Each step with its parameters and the parties it names as receivers."""
    out: list[dict[str, object]] = []
    for i, (kind, params) in enumerate(nj.steps):
        to: list[str] = []
        for k, v in params.items():
            if k.endswith("_to") or k == "label_holder":
                to += [v] if isinstance(v, str) else [str(x) for x in v or []]
        if kind == "psi" and not to:
            to = list(nj.parties)
        out.append({"index": i, "kind": kind, "params": params, "receivers": sorted(set(to))})
    return out


def proposal(service: NodeService, job_id: str) -> dict[str, object]:
    """The job file in readable form and what this node's policy made of it."""
    job = service.job(job_id)
    nj = parse_node_job(job.text)
    infos = service.infos(job_id)
    parties: dict[str, dict[str, Any]] = {}
    for p, ds_name in nj.datasets.items():
        row: dict[str, Any] = {"dataset": ds_name, "id": None, "label": None, "columns": None}
        if p == service.name:
            ds = service.store.dataset(ds_name)
            if ds is not None:
                row.update(id=ds.id_col, label=ds.label_col, rows=ds.rows, sha256=ds.sha256)
                row["columns"] = [c for c in ds.columns if c not in (ds.id_col, ds.label_col)]
        else:
            info = infos.get(p, {})
            row.update(id=info.get("id"), label=info.get("label"))
        parties[p] = row
    mine = {v.party: v for v in service.store.votes(job_id)}.get(service.name)
    decision: dict[str, Any] = {"vote": mine.state.value if mine else VoteState.PENDING.value}
    decision["reason"] = mine.reason if mine else "no vote yet"
    decision["by_policy"] = bool(mine and mine.reason == f"approved by {POLICY}")
    ds = service.store.dataset(nj.datasets.get(service.name, ""))
    if job.initiator != service.name and ds is not None:
        rules = service.cfg.rules
        who, me = job.initiator, service.name
        match = [i for i, r in enumerate(rules) if evaluate((r,), nj, who, me, ds) is None]
        decision["rule"] = rule_json(match[0], rules[match[0]]) if match else None
        decision["policy"] = (
            f"rule {match[0] + 1} approves it"
            if match
            else evaluate(rules, nj, job.initiator, service.name, ds)
        )
    else:
        decision["rule"] = None
        decision["policy"] = "this node proposed the job" if job.initiator == service.name else None
    return {
        "id": job.id,
        "name": job.name,
        "initiator": job.initiator,
        "sha256": job.sha256,
        "state": job.state.value,
        "me": service.name,
        "parties": parties,
        "steps": step_recipients(nj),
        "decision": decision,
        "text": job.text,
    }


def party_status(service: NodeService, job_id: str) -> dict[str, object]:
    """Each party's own view of the job (its step seconds and bytes), asked of its node."""
    job = service.job(job_id)
    out: dict[str, Any] = {}
    for p in job.parties:
        if p == service.name:
            out[p] = {"ok": True, "status": service.status(job_id)}
            continue
        try:
            ans = service.link.call(p, {"kind": "status", "job_id": job_id}, PARTY_TIMEOUT)
        except NetworkError as e:
            ans = {"ok": False, "error": str(e)}
        if ans.get("ok") and isinstance(ans.get("status"), dict):
            out[p] = {"ok": True, "status": ans["status"]}
        else:
            out[p] = {"ok": False, "error": str(ans.get("error") or "no answer")}
    return out


def worker_log(service: NodeService, job_id: str) -> dict[str, object]:
    """The tail of this node's worker log (its stderr)."""
    service.job(job_id)
    path = outputs_dir(service.cfg, job_id) / "job.log"
    if not path.is_file():
        return {"log": "", "truncated": False}
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(max(0, size - LOG_TAIL))
        text = f.read().decode("utf-8", "replace")
    return {"log": text, "truncated": size > LOG_TAIL}


def audit_status(service: NodeService) -> dict[str, object]:
    """Recompute the node's audit log: verified up to entry N, or the first failing entry."""
    from cryptography import x509

    from veil.audit import verify_log

    engine = getattr(service.store, "engine", None)
    if engine is None:
        raise VeilError(f"node '{service.name}' keeps no audit log (in-memory store)")
    tls = service.cfg.tls

    def cert(p: Path) -> x509.Certificate | None:
        return x509.load_pem_x509_certificate(p.read_bytes()) if p.is_file() else None

    with engine.connect() as conn:
        rep = verify_log(conn, cert=cert(Path(tls.cert)), ca=cert(Path(tls.ca_cert)))
    first = rep.first
    return {
        "ok": rep.ok,
        "size": rep.size,
        "heads": rep.heads,
        "witnessed": rep.witnessed,
        "verified_up_to": rep.size if rep.ok else None,
        "first_failure": None
        if first is None
        else {"seq": first.seq, "check": first.check, "message": first.message},
        "findings": len(rep.findings),
        "notes": list(rep.notes),
        "summary": rep.summary(),
    }


def add_views(
    r: APIRouter,
    service: NodeService,
    auth: Callable[[tuple[str, ...]], Callable[..., str]],
) -> None:
    """Register the views on the ``/v1`` router; ``auth(roles)`` makes a role dependency."""
    reader = Depends(auth(("operator", "approver", "auditor")))
    operator = Depends(auth(("operator",)))

    @r.get("/whoami")
    def whoami(actor: str = reader) -> dict[str, Any]:
        role = actor.removeprefix("user:").rsplit("-", 1)[0]
        return {"node": service.name, "role": role, "actor": actor}

    @r.get("/events")
    def all_events(limit: int = 500, actor: str = reader) -> list[dict[str, Any]]:
        evs = service.store.events()[-max(1, min(limit, EVENTS_MAX)) :]
        return [
            {"at": e.at, "kind": e.kind, "job_id": e.job_id, "actor": e.actor, "detail": e.detail}
            for e in evs
        ]

    @r.get("/policy")
    def policy(actor: str = reader) -> list[dict[str, Any]]:
        return [rule_json(i, x) for i, x in enumerate(service.cfg.rules)]

    @r.get("/audit/verify")
    def verify(actor: str = Depends(auth(("auditor",)))) -> dict[str, Any]:
        return audit_status(service)

    @r.get("/jobs/{job_id}/proposal")
    def job_proposal(job_id: str, actor: str = reader) -> dict[str, Any]:
        return proposal(service, job_id)

    @r.get("/jobs/{job_id}/parties")
    def job_parties(job_id: str, actor: str = reader) -> dict[str, Any]:
        return party_status(service, job_id)

    @r.get("/jobs/{job_id}/report")
    def job_report(job_id: str, actor: str = operator) -> dict[str, Any]:
        service.job(job_id)
        return run_report(outputs_dir(service.cfg, job_id) / "out")

    @r.get("/jobs/{job_id}/log")
    def job_log(job_id: str, actor: str = operator) -> dict[str, Any]:
        return worker_log(service, job_id)

    @r.get("/jobs/{job_id}/model")
    def job_model(job_id: str, actor: str = operator) -> dict[str, Any]:
        service.job(job_id)
        return model_report(outputs_dir(service.cfg, job_id) / "out", service.name)
