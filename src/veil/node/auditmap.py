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
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from veil.node.model import Event

if TYPE_CHECKING:
    from sqlalchemy import Engine

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
    if k == "auth.failed":
        client = a.partition(":")[2] or a
        return [("auth.failed", a, {"client": _name(client), "reason": _text(d["reason"])})]
    return []


class AuditSink:
    """The node's :class:`~veil.node.store.EventSink`: the events table and the audit log.

    Both are written on the connection of the state change, so a change, its event and
    its audit entries commit together or not at all.
    """

    def __init__(self, engine: Engine) -> None:
        from veil.audit import AuditLog

        self.log = AuditLog(engine)

    def append(self, conn: Any, ev: Event) -> None:
        from veil.audit import Event as AuditEvent
        from veil.audit import EventKind
        from veil.node.sqlstore import TableSink

        TableSink().append(conn, ev)
        records = audit_records(ev)
        if records:
            entries = [AuditEvent(EventKind(k), a, p, job=ev.job_id) for k, a, p in records]
            self.log.append_many(conn, entries)
