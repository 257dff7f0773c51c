"""What a job did, as each party's log tells it, and whether the parties' logs agree.

From verified exports (:func:`veil.audit.verify_export` first: this module trusts
the entries it reads) :func:`job_views` collects, per node, the job's hash and
parties, every vote it recorded, the datasets and columns it gave, the outputs it
released and the bytes it exchanged with each peer. :func:`disagreements` compares
the nodes' accounts: the same job hash and parties, the same decision for every
voter, no node succeeding where another failed, and, for a job every node finished,
the bytes each sent to a peer equal to what that peer says it received.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.audit.events import EventKind
from veil.errors import ConfigError


@dataclass
class PartyView:
    """One node's account of one job."""

    node: str
    hashes: set[str] = field(default_factory=set)
    initiators: set[str] = field(default_factory=set)
    parties: set[tuple[str, ...]] = field(default_factory=set)
    votes: dict[str, str] = field(default_factory=dict)  # voter -> "approve" / "reject"
    by: dict[str, str] = field(default_factory=dict)  # voter -> "policy" / approver
    datasets: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # peer -> bytes, all steps
    received: dict[str, int] = field(default_factory=dict)
    status: str | None = None  # "ok", "failed (ERROR)", "cancelled"
    witnessed: set[str] = field(default_factory=set)  # nodes whose head this log holds

    def _add(self, rec: Mapping[str, Any]) -> None:
        """Fold one entry of the job into the view."""
        kind, p = rec["kind"], rec["payload"]
        if kind in (EventKind.JOB_PROPOSED, EventKind.JOB_STARTED):
            self.hashes.add(p["job_hash"])
            if kind == EventKind.JOB_PROPOSED:
                self.initiators.add(p["initiator"])
            else:
                self.parties.add(tuple(sorted(p["parties"])))
        elif kind == EventKind.VOTE:
            self.votes[p["voter"]] = p["decision"]
            how = p.get("rule") or p.get("approver")
            if how:
                self.by[p["voter"]] = how
        elif kind == EventKind.DATASET_ACCESSED:
            self.datasets.append(p)
        elif kind == EventKind.OUTPUT_RELEASED:
            self.outputs.append(p)
        elif kind == EventKind.BYTES_EXCHANGED:
            self.sent[p["peer"]] = self.sent.get(p["peer"], 0) + p["sent"]
            self.received[p["peer"]] = self.received.get(p["peer"], 0) + p["received"]
        elif kind == EventKind.JOB_FINISHED:
            self.status = p["status"]
        elif kind == EventKind.JOB_FAILED:
            self.status = f"failed ({p['error']})"
        elif kind == EventKind.JOB_CANCELLED:
            self.status = "cancelled"
        elif kind == EventKind.HEAD_WITNESSED:
            self.witnessed.add(p["node"])


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    node = ""
    with Path(path).open("rb") as f:
        for raw in f:
            obj = json.loads(raw)
            if obj.get("type") == "log":
                node = str(obj.get("node"))
            elif obj.get("type") == "entry":
                yield node, json.loads(obj["entry"])


def job_views(paths: list[Path]) -> dict[str, dict[str, PartyView]]:
    """job id -> node -> that node's account, from (already verified) exports."""
    out: dict[str, dict[str, PartyView]] = {}
    for path in paths:
        try:
            for node, rec in _records(path):
                job = rec.get("job")
                if job is not None:
                    view = out.setdefault(job, {}).setdefault(node, PartyView(node))
                    view._add(rec)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(str(path), f"cannot read the export's entries: {e}") from None
    return out


def disagreements(views: Mapping[str, PartyView]) -> list[str]:
    """Where the nodes' accounts of one job differ (empty: they agree)."""
    out: list[str] = []
    nodes = sorted(views)

    def same(what: str, get: Any) -> None:
        vals = {n: get(views[n]) for n in nodes}
        if len({json.dumps(v, sort_keys=True, default=sorted) for v in vals.values()}) > 1:
            out.append(f"{what} differ: " + "; ".join(f"{n}: {v}" for n, v in vals.items()))

    same("job hashes", lambda v: sorted(v.hashes))
    same("initiators", lambda v: sorted(v.initiators))
    same("party lists", lambda v: sorted(v.parties))
    for n in nodes:
        if len(views[n].hashes) > 1:
            out.append(f"{n} recorded several hashes for the job: {sorted(views[n].hashes)}")
    voters = sorted({x for v in views.values() for x in v.votes})
    for voter in voters:
        seen = {n: views[n].votes.get(voter, "no vote") for n in nodes}
        if len(set(seen.values())) > 1:
            out.append(
                f"vote of {voter} differs: " + ", ".join(f"{n} has {d}" for n, d in seen.items())
            )
    finals = {n: views[n].status for n in nodes}
    if "ok" in finals.values() and any(s != "ok" for s in finals.values()):
        out.append(
            "outcome differs: " + ", ".join(f"{n}: {s or 'not over'}" for n, s in finals.items())
        )
    if all(s == "ok" for s in finals.values()):
        for a in nodes:
            for b in nodes:
                if a != b and b in views[a].sent:
                    sent, got = views[a].sent[b], views[b].received.get(a, 0)
                    if sent != got:
                        out.append(
                            f"{a} says it sent {sent} bytes to {b}, {b} says it received {got}"
                        )
    return out


def describe(job: str, views: Mapping[str, PartyView]) -> list[str]:
    """The job as each node's log tells it, one block per node."""
    lines = [f"job {job}: {len(views)} logs ({', '.join(sorted(views))})"]
    for n in sorted(views):
        v = views[n]
        h = ", ".join(x[:16] for x in sorted(v.hashes)) or "-"
        lines.append(f"  {n}: job hash {h}, status {v.status or 'not over'}")
        votes = ", ".join(
            f"{x}={d}" + (f" ({v.by[x]})" if x in v.by else "") for x, d in sorted(v.votes.items())
        )
        lines.append(f"    votes: {votes or '-'}")
        for d in v.datasets:
            cols = ", ".join(d["columns"])
            lines.append(f"    dataset {d['dataset']} ({d['rows']} rows): columns {cols}")
        for o in v.outputs:
            name = o.get("artifact", "-")
            lines.append(
                f"    output {name} to {o['recipient']} (sha256 {o['artifact_hash'][:16]})"
            )
        for peer in sorted(set(v.sent) | set(v.received)):
            lines.append(
                f"    bytes with {peer}: sent {v.sent.get(peer, 0)}, "
                f"received {v.received.get(peer, 0)}"
            )
        if v.witnessed:
            lines.append(f"    witnessed heads of: {', '.join(sorted(v.witnessed))}")
    return lines
