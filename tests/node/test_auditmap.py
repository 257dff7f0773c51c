"""Node events map onto the audit log's vocabulary (checked by veil.audit where present)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from veil.node.auditmap import audit_records
from veil.node.model import Event, JobState

from .nodes import InProc, job_text, make_nodes, running, wait_for

H = "a" * 64
LATE = "party 'bureau' stopped answering heartbeats for 31 s during step 0"


def _audit_check(records: list[tuple[str, str, dict[str, object]]], job: str | None) -> None:
    """Build each entry as an audit Event, which validates kind, actor and payload."""
    if importlib.util.find_spec("veil.audit") is None:
        return
    from veil.audit import Event as AuditEvent

    for kind, actor, payload in records:
        AuditEvent(kind=kind, actor=actor, payload=payload, job=job)  # type: ignore[arg-type]


def test_each_kind_maps_to_audit_entries() -> None:
    cases = [
        (
            Event(
                "job.submitted", "j1", "user:operator-1a2b3c4d", {"sha256": H, "initiator": "bank"}
            ),
            [
                ("job.proposed", {"job_hash": H, "initiator": "bank"}),
                (
                    "job.vote",
                    {"voter": "bank", "decision": "approve", "approver": "user:operator-1a2b3c4d"},
                ),
            ],
        ),
        (
            Event(
                "vote.approved",
                "j1",
                "node:bureau",
                {"party": "bureau", "sha256": H, "by": "policy"},
            ),
            [("job.vote", {"voter": "bureau", "decision": "approve", "rule": "policy"})],
        ),
        (
            Event(
                "vote.rejected", "j1", "peer:telco", {"party": "telco", "sha256": H, "reason": "no"}
            ),
            [("job.vote", {"voter": "telco", "decision": "reject"})],
        ),
        (
            Event(
                "job.running",
                "j1",
                "node:bank",
                {"state": "running", "sha256": H, "parties": ["bank", "bureau"]},
            ),
            [("job.started", {"job_hash": H, "parties": ["bank", "bureau"]})],
        ),
        (
            Event(
                "job.failed",
                "j1",
                "node:bank",
                {"error": LATE},
            ),
            [
                (
                    "job.failed",
                    {
                        "error": "peer_timeout",
                        "reason": LATE,
                    },
                )
            ],
        ),
        (
            Event("step.ok", "j1", "node:bank", {"step": 0, "name": "psi", "state": "ok"}),
            [("step.ended", {"step": "psi", "status": "ok"})],
        ),
        (
            Event(
                "dataset.added",
                None,
                "user:cli",
                {"name": "bank_credit", "rows": 5, "sha256": H, "schema_hash": H, "columns": 3},
            ),
            [("dataset.registered", {"dataset": "bank_credit", "schema_hash": H, "rows": 5})],
        ),
        (
            Event(
                "job.outputs", "j1", "node:bank", {"files": [{"name": "bank/psi.csv", "sha256": H}]}
            ),
            [
                (
                    "output.released",
                    {"recipient": "bank", "artifact_hash": H, "artifact": "bank/psi.csv"},
                )
            ],
        ),
        (
            Event(
                "step.running", "j1", "node:bank", {"step": 0, "name": "_echo", "state": "running"}
            ),
            [("step.started", {"step": "x_echo"})],  # audit names start with a letter or digit
        ),
        (Event("vote.pending", "j1", "node:bank", {"party": "bank", "reason": "x"}), []),
        (Event("token.issued", None, "user:cli", {"role": "auditor"}), []),
        (
            Event(
                "auth.failed", None, "user:anonymous", {"status": 401, "reason": "unknown token"}
            ),
            [("auth.failed", {"client": "anonymous", "reason": "unknown token"})],
        ),
    ]
    for ev, want in cases:
        got = audit_records(ev)
        assert [(k, p) for k, _, p in got] == want, ev.kind
        assert all(actor == ev.actor for _, actor, _ in got)
        _audit_check(got, ev.job_id)


@contextmanager
def approved_then_cancelled(
    tmp_path: Path, ca: Path, by: str, operator: str
) -> Iterator[tuple[dict[str, InProc], dict[str, Path]]]:
    """Two running nodes (bureau approves bank's psi jobs on its dataset) once a job of
    bank's is approved everywhere and then cancelled at ``by`` by ``operator``: the
    nodes and their folders."""
    policy = (
        '\n[[policy.approve]]\npartners = ["bank"]\nsteps = ["psi"]\ndatasets = ["bureau_data"]\n'
    )
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"], {"bureau": policy})
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau"]), "user:operator-00000000")
        for x in n.values():
            wait_for(lambda x=x: x.store.job(job.id).state == JobState.APPROVED, what="approved")
        n[by].service.cancel(job.id, operator)
        for x in n.values():
            wait_for(lambda x=x: x.store.job(job.id).state == JobState.CANCELLED, what="cancel")
        yield n, dirs


def test_every_event_of_a_real_flow_maps(tmp_path: Path, ca: Path) -> None:
    with approved_then_cancelled(tmp_path, ca, "bank", "user:operator-00000000") as (n, _):
        for x in n.values():
            kinds = []
            for ev in x.store.events():
                recs = audit_records(ev)
                _audit_check(recs, ev.job_id)
                kinds += [k for k, _, _ in recs]
            assert kinds.count("job.proposed") == 1, kinds
            # no launcher here: approved, never started
            assert "job.started" not in kinds and "job.cancelled" in kinds, kinds
            assert kinds.count("job.vote") == 2 and "dataset.registered" in kinds


def test_a_nodes_state_changes_land_in_its_audit_log(tmp_path: Path, ca: Path) -> None:
    from veil.audit import verify_log
    from veil.cli import main

    with approved_then_cancelled(tmp_path, ca, "bureau", "user:operator-11111111") as (n, dirs):
        engine = n["bureau"].store.engine  # type: ignore[attr-defined]
        with engine.connect() as conn:
            report = verify_log(conn, deep=True)
        assert report.ok, report
        assert report.size >= 5  # dataset, proposal, two votes, cancel
    assert main(["audit", "verify", "--node", str(dirs["bureau"])]) == 0


def test_a_head_is_retried_until_the_peer_takes_it() -> None:
    from veil.node.auditmap import push_head

    calls: list[str] = []
    answers = {
        "bureau": iter([{"ok": False, "error": "UNAVAILABLE"}, {"ok": True}]),
        "telco": iter([{"ok": True}]),
    }

    def call(p: str) -> dict[str, object]:
        calls.append(p)
        return next(answers[p])

    waits: list[float] = []
    assert push_head(call, ["bureau", "telco"], (1.0, 2.0), waits.append) == {
        "bureau": None,
        "telco": None,
    }
    assert calls == ["bureau", "telco", "bureau"] and waits == [1.0]


def test_a_peer_down_for_every_try_is_reported_with_its_last_error() -> None:
    from veil.node.auditmap import push_head

    def call(p: str) -> dict[str, object]:
        raise ConnectionError(f"{p} refused")

    waits: list[float] = []
    assert push_head(call, ["bureau"], (1.0, 2.0), waits.append) == {"bureau": "bureau refused"}
    assert waits == [1.0, 2.0]
