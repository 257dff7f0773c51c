"""Witnessing wired into the node: at a job's end each node's signed head reaches its partners.

Two in-process nodes over mutual-TLS gRPC (the node's real peer channel and job-end
path; the worker is replaced by one that ends at once). Then the bank truncates its
log and re-signs a new head with its own key: the head the bureau witnessed catches it,
through the database (consistency proof) and through the exports and ``veil audit``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete

from tests.audit.conftest import Fed
from tests.audit.test_store import rewrite_all, stored
from tests.node.nodes import job_text, make_nodes, running, wait_for
from veil.audit import AuditError, check_witness, load_node_key, witnessed_heads
from veil.audit.store import heads_table
from veil.cli import main
from veil.node.model import Job, JobState
from veil.node.service import NodeService

POLICY = """
[[policy.approve]]
partners = ["bank"]
steps = ["psi"]
datasets = ["bureau_data"]
"""


class EndsAtOnce:
    """A launcher whose worker succeeds at once: the node's own running and end path."""

    def start(self, service: NodeService, job: Job) -> None:
        service.set_state(
            job,
            JobState.RUNNING,
            "job.running",
            service.me,
            sha256=job.sha256,
            parties=list(job.parties),
        )
        threading.Thread(target=service.finished, args=(job.id, True, None), daemon=True).start()

    def stop(self, job_id: str) -> None:
        pass


def _held(node: object, of: str) -> list[object]:
    engine = node.store.sink.log.engine  # type: ignore[attr-defined]
    with engine.connect() as c:
        return [h for _, h in witnessed_heads(c, of)]


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_a_truncated_and_resigned_log_is_caught_by_the_head_a_partner_witnessed(
    tmp_path: Path,
    fed: Fed,
    db: str,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dbs = {"bank": str(request.getfixturevalue("postgres_db"))} if db == "postgres" else {}
    dirs = make_nodes(tmp_path, fed.ca_dir, ["bank", "bureau"], {"bureau": POLICY}, dbs)
    with running(dirs, EndsAtOnce()) as n:
        jobs = [n["bank"].service.submit(job_text(["bank", "bureau"]), "user:op") for _ in range(2)]
        for x in n.values():
            for j in jobs:
                wait_for(
                    lambda x=x, j=j: x.store.job(j.id).state == JobState.SUCCEEDED, what="done"
                )
        wait_for(lambda: len(_held(n["bureau"], "bank")) == 2, what="bureau witnessed 2 heads")
        wait_for(lambda: len(_held(n["bank"], "bureau")) == 2, what="bank witnessed 2 heads")
        kinds = [e.kind for e in n["bank"].store.events(jobs[0].id)]
        assert "dataset.accessed" in kinds and kinds.index("dataset.accessed") > kinds.index(
            "job.running"
        )
        held = _held(n["bureau"], "bank")
        bank_log = n["bank"].store.sink.log  # type: ignore[attr-defined]
        entries = stored(bank_log.engine)
        with bank_log.engine.connect() as c:
            own = {h.size for h in bank_log.heads(c) if h.node == "bank"}
        accessed = [i for i, e in enumerate(entries) if b'"dataset.accessed"' in e]
        assert len(accessed) == 2 and all(i + 1 in own for i in accessed), (accessed, own)
        assert len(own) >= len(jobs) * 3  # a head after every job event batch, not only at the end
        with bank_log.engine.connect() as c:
            for h in held:
                check_witness(c, h)  # honest so far
        engine = bank_log.engine
        # the bank drops its second job's entries and re-signs with its own key
        keep = stored(engine)[: held[0].size]
        rewrite_all(engine, keep)
        with engine.begin() as c:
            c.execute(delete(heads_table).where(heads_table.c.size > held[0].size))
            key = load_node_key(
                dirs["bank"] / "tls" / "bank.crt", dirs["bank"] / "tls" / "bank.key"
            )
            bank_log.sign_head(c, key)
        with engine.connect() as c:
            check_witness(c, held[0])
            with pytest.raises(AuditError, match="truncated"):
                check_witness(c, held[1])
        # ... and grows it again past the witnessed size with other entries: now the
        # consistency proof from the witnessed head fails
        with engine.begin() as c:
            from tests.audit.conftest import job_events

            bank_log.append_many(c, job_events("job-x") * 3)
            bank_log.sign_head(c, key)
        with engine.connect() as c, pytest.raises(AuditError, match="rewritten"):
            check_witness(c, held[1])
    ca = str(dirs["bank"] / "tls" / "ca.crt")
    out = {p: tmp_path / f"{p}.jsonl" for p in dirs}
    for p, d in dirs.items():
        assert main(["audit", "export", "--node", str(d), "--out", str(out[p])]) == 0
    assert main(["audit", "verify", str(out["bank"]), "--ca", ca]) == 0  # alone it looks fine
    assert main(["audit", "verify", str(out["bureau"]), "--ca", ca]) == 0
    capsys.readouterr()
    rc = main(["audit", "verify", str(out["bank"]), "--ca", ca, "--witness", str(out["bureau"])])
    text = capsys.readouterr().out
    assert rc == 1 and "[witnessed head]" in text, text
    rc = main(["audit", "verify", "--node", str(dirs["bank"]), "--witness", str(out["bureau"])])
    assert rc == 1 and "[witnessed head]" in capsys.readouterr().out


def test_dataset_access_and_traffic_become_audit_entries() -> None:
    from veil.audit import Event as AuditEvent
    from veil.node.auditmap import audit_records
    from veil.node.model import Event

    access = Event(
        "dataset.accessed",
        "j1",
        "node:bank",
        {"dataset": "bank credit", "columns": ["id", "y"], "rows": 9},
    )
    traffic = Event(
        "job.traffic",
        "j1",
        "node:bank",
        {"steps": [{"step": "psi", "peer": "telco", "sent": 5, "received": 7}]},
    )
    recs = audit_records(access) + audit_records(traffic)
    assert [(k, p) for k, _, p in recs] == [
        ("dataset.accessed", {"dataset": "bank_credit", "columns": ["id", "y"], "rows": 9}),
        ("step.bytes", {"step": "psi", "peer": "telco", "sent": 5, "received": 7}),
    ]
    for kind, actor, payload in recs:
        AuditEvent(kind=kind, actor=actor, payload=payload, job="j1")  # type: ignore[arg-type]


def test_a_head_message_is_checked_against_its_sender(engine: Engine, fed: Fed) -> None:
    from veil.audit import AuditLog, accept_head, head_message
    from veil.errors import ProtocolError

    log = AuditLog(engine)  # an empty log on SQLite and PostgreSQL
    with engine.begin() as c:
        head = log.sign_head(c, fed.keys["telco"])
        msg = head_message(head, fed.keys["telco"].cert)
        assert accept_head(c, msg, "telco", fed.ca, job="j1") == 0
        with pytest.raises(ProtocolError, match="'bank' sent a head of 'telco'"):
            accept_head(c, msg, "bank", fed.ca)
        with pytest.raises(ProtocolError, match=r"audit\.head"):
            accept_head(c, {"head": {"node": "telco"}, "cert": msg["cert"]}, "telco", fed.ca)
        with pytest.raises(ProtocolError, match="needs a head object"):
            accept_head(c, {"head": "x"}, "telco", fed.ca)
        forged = {**msg, "cert": head_message(head, fed.keys["bank"].cert)["cert"]}
        with pytest.raises(AuditError, match="signed by"):
            accept_head(c, forged, "telco", fed.ca)
