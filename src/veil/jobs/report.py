"""``report.json``: what each step did, how long it took, what crossed the wire.

A step whose seed the jobs layer derived (:mod:`veil.jobs.seeds`) says so under
``seed``; the runner adds ``warnings`` (data and intersection warnings) and, for a
failed run, ``logs`` (the failed workers' last log lines).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TRAFFIC_KEYS = ("bytes_sent", "bytes_received", "messages_sent", "messages_received")


@dataclass
class StepRecord:
    """What the parent learned about one step from the workers' events."""

    name: str
    status: str = "not run"  # -> running -> ok | failed
    started: float | None = None
    ended: float | None = None
    outputs: dict[str, dict[str, object]] = field(default_factory=dict)
    traffic: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None
    seed: dict[str, object] | None = None  # {"value", "source"} when the seed was derived

    @property
    def seconds(self) -> float | None:
        """Wall time from the first party starting it to the last one finishing it."""
        if self.started is None or self.ended is None:
            return None
        return round(self.ended - self.started, 3)


def merge_outputs(per_party: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    """One value per key where the parties agree, else ``{party: value}``.

    ``intersection_size`` reported alike by both PSI parties becomes one number;
    ``n_input``, which differs, stays per party.
    """
    keys: list[str] = []
    for o in per_party.values():
        keys += [k for k in o if k not in keys]
    merged: dict[str, Any] = {}
    for k in keys:
        vals = {p: o[k] for p, o in per_party.items() if k in o and o[k] is not None}
        distinct = {json.dumps(v, sort_keys=True) for v in vals.values()}
        merged[k] = next(iter(vals.values())) if len(distinct) == 1 else (vals or None)
    return merged


def _per_peer(traffic: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """``{peer: {bytes_sent, bytes_received}}`` from a worker's ``bytes_sent:PEER`` keys."""
    out: dict[str, dict[str, int]] = {}
    for k, v in traffic.items():
        what, sep, peer = k.partition(":")
        if sep and what in ("bytes_sent", "bytes_received"):
            out.setdefault(peer, {"bytes_sent": 0, "bytes_received": 0})[what] = int(v)
    return out


def build_report(
    name: str,
    parties: Sequence[str],
    steps: Sequence[StepRecord],
    error: str | None,
    seconds: float,
) -> dict[str, Any]:
    """The report as JSON-able dicts, parties in job order."""
    rows = []
    for s in steps:
        outputs = {p: s.outputs[p] for p in parties if p in s.outputs}
        row: dict[str, Any] = {
            "name": s.name,
            "status": s.status,
            "seconds": s.seconds,
            "outputs": merge_outputs(outputs),
            "party_outputs": outputs,
            "traffic": {
                p: {k: int(s.traffic[p].get(k, 0)) for k in TRAFFIC_KEYS}
                for p in parties
                if p in s.traffic
            },
        }
        peers = {p: _per_peer(s.traffic[p]) for p in parties if p in s.traffic}
        if any(peers.values()):
            row["peer_traffic"] = {p: v for p, v in peers.items() if v}
        if s.error:
            row["error"] = s.error
        if s.seed is not None:
            row["seed"] = s.seed
        rows.append(row)
    report: dict[str, Any] = {
        "name": name,
        "status": "ok" if error is None else "failed",
        "seconds": round(seconds, 3),
        "parties": list(parties),
        "steps": rows,
    }
    if error is not None:
        report["error"] = error
    return report
