"""The node's events in the audit log's vocabulary (issue #19), without importing it.

:func:`audit_records` turns one node :class:`~veil.node.model.Event` into the
``(kind, actor, payload)`` triples the audit log records (names, counts, statuses
and SHA-256 hashes only; free text cut to 300 characters). An ``EventSink`` that
writes them with ``AuditLog.append(conn, audit.Event(kind, actor, payload, job))``
inside the node's transaction is all the audit log needs::

    class AuditSink:
        def __init__(self, log: AuditLog) -> None:
            self.log, self.table = log, TableSink()

        def append(self, conn, ev):
            self.table.append(conn, ev)
            for kind, actor, payload in audit_records(ev):
                self.log.append(conn, audit.Event(kind, actor, payload, job=ev.job_id))

Events with no audit meaning (a pending vote, token issue) map to nothing.
:class:`AuditSink` is that sink; every node database uses it (:func:`veil.node.admin.open_store`).

The node's other hooks into the audit trail, each called from one line of node code:
:func:`job_changed` (after every job state change: the dataset access when the job
starts running here; at the job's end a signed head sent to every other party),
:func:`receive_head` (the peer message ``audit.head``: a partner's head, checked and
recorded) and :func:`record_traffic` (the bytes exchanged with each peer per step,
from the worker's report).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from veil.node.model import Event, Job, JobState

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy import Engine

    from veil.audit import NodeKey
    from veil.node.service import NodeService

log = logging.getLogger(__name__)

Record = tuple[str, str, dict[str, Any]]
_TEXT = 300
_NAME = re.compile(r"[^A-Za-z0-9_.:@/+-]")


def _text(s: Any) -> str:
    t = "".join(c if c.isprintable() else " " for c in str(s)).strip()
    return (t or "-")[:_TEXT]


def _name(s: Any) -> str:
    """A name the audit log accepts: its alphabet, starting with a letter or digit."""
    n = _NAME.sub("_", str(s))
    return (n if n[:1].isalnum() else f"x{n}")[:128]


def _error_name(error: str) -> str:
    for key, name in (
        ("stopped answering heartbeats", "peer_timeout"),
        ("node restarted", "node_restarted"),
        ("node stopped", "node_stopped"),
        ("hash mismatch", "hash_mismatch"),
        ("cannot start", "start_failed"),
        ("cannot propose", "peer_unreachable"),
    ):
        if key in error:
            return name
    return "job_failed"


def audit_records(ev: Event) -> list[Record]:
    """The audit entries for ``ev`` (often one, sometimes none or several)."""
    d, a = ev.detail, ev.actor
    k = ev.kind
    if k in ("job.submitted", "job.proposed"):
        init = _name(d["initiator"])
        out: list[Record] = [("job.proposed", a, {"job_hash": d["sha256"], "initiator": init})]
        if k == "job.submitted":  # submitting is the initiator's approval
            vote = {"voter": init, "decision": "approve", "approver": _name(a)}
            out.append(("job.vote", a, vote))
        return out
    if k in ("vote.approved", "vote.rejected"):
        payload: dict[str, Any] = {
            "voter": _name(d["party"]),
            "decision": "approve" if k == "vote.approved" else "reject",
        }
        if d.get("by") == "policy":
            payload["rule"] = "policy"
        elif d.get("by"):
            payload["approver"] = _name(d["by"])
        return [("job.vote", a, payload)]
    if k == "job.running":
        parties = [_name(p) for p in d["parties"]]
        return [("job.started", a, {"job_hash": d["sha256"], "parties": parties})]
    if k == "job.succeeded":
        return [("job.finished", a, {"status": "ok"})]
    if k in ("job.failed", "job.rejected"):
        err = str(d.get("error", ""))
        name = "rejected" if k == "job.rejected" else _error_name(err)
        return [("job.failed", a, {"error": name, "reason": _text(err)})]
    if k == "job.cancelled":
        return [("job.cancelled", a, {"by": _name(a), "reason": _text(d.get("error", ""))})]
    if k.startswith("step."):
        step = _name(d["name"])
        if d.get("state") == "running":
            return [("step.started", a, {"step": step})]
        status = {"ok": "ok", "failed": "failed"}.get(str(d.get("state")))
        return [] if status is None else [("step.ended", a, {"step": step, "status": status})]
    if k == "dataset.added":
        payload = {"dataset": _name(d["name"]), "schema_hash": d["schema_hash"], "rows": d["rows"]}
        return [("dataset.registered", a, payload)]
    if k == "job.outputs":
        me = a.partition(":")[2] or a
        return [
            (
                "output.released",
                a,
                {
                    "recipient": _name(me),
                    "artifact_hash": f["sha256"],
                    "artifact": _name(f["name"]),
                },
            )
            for f in d["files"]
        ]
    if k == "dataset.accessed":
        cols = [_name(c) for c in d["columns"]]
        return [
            (
                "dataset.accessed",
                a,
                {"dataset": _name(d["dataset"]), "columns": cols, "rows": d["rows"]},
            )
        ]
    if k == "job.traffic":
        return [
            (
                "step.bytes",
                a,
                {
                    "step": _name(t["step"]),
                    "peer": _name(t["peer"]),
                    "sent": t["sent"],
                    "received": t["received"],
                },
            )
            for t in d["steps"]
        ]
    if k == "auth.failed":
        client = a.partition(":")[2] or a
        return [("auth.failed", a, {"client": _name(client), "reason": _text(d["reason"])})]
    return []


class AuditSink:
    """The node's :class:`~veil.node.store.EventSink`: the events table and the audit log.

    Both are written on the connection of the state change, so a change, its event and
    its audit entries commit together or not at all.
    """

    def __init__(self, engine: Engine, key_files: tuple[Path, Path] | None = None) -> None:
        from veil.audit import AuditLog

        self.log = AuditLog(engine)
        self.key_files = key_files
        self._key: NodeKey | None = None

    def node_key(self) -> NodeKey | None:
        """The node's signing key (its TLS key), read once; None before it exists."""
        if self._key is None and self.key_files is not None:
            from veil.audit import load_node_key

            cert, key = self.key_files
            if cert.exists() and key.exists():
                self._key = load_node_key(cert, key)
        return self._key

    def append(self, conn: Any, ev: Event) -> None:
        """Record ``ev``; after a job's batch of entries, a signed head in the same
        transaction (so every job event batch ends at a head the node signed)."""
        from veil.audit import Event as AuditEvent
        from veil.audit import EventKind
        from veil.node.sqlstore import TableSink

        TableSink().append(conn, ev)
        records = audit_records(ev)
        if records:
            entries = [AuditEvent(EventKind(k), a, p, job=ev.job_id) for k, a, p in records]
            self.log.append_many(conn, entries)
            key = self.node_key() if ev.job_id is not None else None
            if key is not None:
                self.log.sign_head(conn, key)


def _sink(svc: NodeService) -> AuditSink | None:
    sink = getattr(svc.store, "sink", None)
    return sink if isinstance(sink, AuditSink) else None


def job_changed(svc: NodeService, job: Job) -> None:
    """After a state change of ``job``: record its dataset access or witness its end.

    Running here: the dataset this node gives and its columns and rows (the worker reads
    them). Final: sign this node's tree head and send it to every other party, in a
    thread (a dead peer must not hold up the job's end), retrying a peer that fails
    (:func:`push_head`); each records it in its log.
    """
    if _sink(svc) is None:
        return
    if job.state == JobState.RUNNING:
        from veil.node.jobfile import parse_node_job

        ds = svc.store.dataset(parse_node_job(job.text).datasets[svc.name])
        if ds is not None:
            detail = {"dataset": ds.name, "columns": list(ds.columns), "rows": ds.rows}
            with svc.store.change(Event("dataset.accessed", job.id, svc.me, detail)):
                pass
    elif job.state.final:
        t = threading.Thread(target=_witness, args=(svc, job), daemon=True, name=f"wit-{job.id}")
        t.start()


def _witness(svc: NodeService, job: Job) -> None:
    from veil.audit import WIRE_KIND, head_message, load_node_key

    sink = _sink(svc)
    assert sink is not None
    try:
        tls = svc.cfg.tls
        key = load_node_key(tls.cert, tls.key)
        with sink.log.engine.begin() as conn:
            head = sink.log.sign_head(conn, key)
    except Exception as e:  # a thread of its own: say why, never die silently
        log.warning("node %s: cannot sign a tree head for %s: %s", svc.name, job.id, e)
        return
    msg = {"kind": WIRE_KIND, "job_id": job.id, **head_message(head, key.cert)}
    peers = [p for p in job.parties if p != svc.name]
    timeout = min(svc.cfg.peer_timeout, 10.0)
    for p, error in push_head(lambda p: svc.link.call(p, msg, timeout), peers).items():
        if error is not None:
            log.warning("node %s: %s did not witness head %d: %s", svc.name, p, head.size, error)


RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)  # seconds between tries: a peer restarting is back


def push_head(
    call: Callable[[str], Mapping[str, object]],
    peers: list[str],
    delays: tuple[float, ...] = RETRY_DELAYS,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str | None]:
    """Send a signed head to each peer, retrying those that fail after ``delays``.

    Returns each peer's last error, or None once it accepted the head. A peer that is
    down for longer than the retries misses this head only: the next job's head covers
    every earlier entry, so its witness still pins this one.
    """
    errors: dict[str, str | None] = {}
    pending = list(peers)
    for delay in (*delays, None):
        failed = []
        for p in pending:
            try:
                ans = call(p)
            except Exception as e:  # unreachable, or the node is closing its channels
                ans = {"ok": False, "error": str(e)}
            errors[p] = None if ans.get("ok") else str(ans.get("error"))
            if errors[p] is not None:
                failed.append(p)
        pending = failed
        if not pending or delay is None:
            break
        sleep(delay)
    return errors


def receive_head(svc: NodeService, sender: str, msg: Mapping[str, object]) -> dict[str, object]:
    """The ``audit.head`` peer message: check ``sender``'s head and record it in our log."""
    from veil.audit import accept_head

    sink = _sink(svc)
    if sink is None:
        return {"ok": False, "error": f"node '{svc.name}' keeps no audit log"}
    job_id = str(msg.get("job_id"))
    job = svc.store.job(job_id)
    if job is None or sender not in job.parties:
        return {"ok": False, "error": f"party '{sender}' is not in a job '{job_id}' here"}
    ca = svc.cfg.tls.ca_cert.read_bytes()
    with sink.log.engine.begin() as conn:
        seq = accept_head(conn, msg, sender, ca, job=job_id)
    return {"ok": True, "seq": seq}


def record_traffic(svc: NodeService, job_id: str, report: Mapping[str, object]) -> None:
    """Record the bytes this node's worker sent to and received from each peer, per step."""
    rows = []
    steps = report.get("steps")
    for row in steps if isinstance(steps, list) else []:
        per_party = row.get("peer_traffic") if isinstance(row, dict) else None
        mine = per_party.get(svc.name) if isinstance(per_party, dict) else None
        for peer, t in sorted((mine or {}).items()):
            sent, got = int(t.get("bytes_sent", 0)), int(t.get("bytes_received", 0))
            rows.append(
                {"step": str(row["name"]), "peer": str(peer), "sent": sent, "received": got}
            )
    if rows:
        with svc.store.change(Event("job.traffic", job_id, svc.me, {"steps": rows})):
            pass
