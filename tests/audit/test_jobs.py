"""``veil audit verify A.jsonl B.jsonl C.jsonl --ca``: one job as each party's log tells it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.audit.conftest import Fed, NodeDir, h, node_dir
from veil.audit import Event, EventKind
from veil.audit.jobs import disagreements, job_views
from veil.cli import main

NAMES = ["bank", "bureau", "telco"]
SENT = {"bank": {"bureau": 100, "telco": 200}, "bureau": {"bank": 300, "telco": 5}}
SENT["telco"] = {"bank": 7, "bureau": 9}


def job_log(nd: NodeDir, me: str, *, bureau_vote: str = "approve", sent_extra: int = 0) -> None:
    """The entries a node records for job j1 (as the node's audit hooks write them)."""
    a = f"node:{me}"
    evs = [
        Event(EventKind.JOB_PROPOSED, a, {"job_hash": h("j1"), "initiator": "bank"}, "j1"),
        Event(EventKind.VOTE, a, {"voter": "bank", "decision": "approve"}, "j1"),
        Event(EventKind.VOTE, a, {"voter": "bureau", "decision": bureau_vote}, "j1"),
        Event(EventKind.VOTE, a, {"voter": "telco", "decision": "approve"}, "j1"),
        Event(EventKind.JOB_STARTED, a, {"job_hash": h("j1"), "parties": NAMES}, "j1"),
        Event(
            EventKind.DATASET_ACCESSED,
            a,
            {"dataset": f"{me}_d", "columns": ["id", f"{me}_x"], "rows": 10},
            "j1",
        ),
    ]
    for peer in NAMES:
        if peer != me:
            payload = {
                "step": "psi",
                "peer": peer,
                "sent": SENT[me][peer] + sent_extra,
                "received": SENT[peer][me],
            }
            evs.append(Event(EventKind.BYTES_EXCHANGED, a, payload, "j1"))
    evs += [
        Event(
            EventKind.OUTPUT_RELEASED,
            a,
            {"recipient": me, "artifact_hash": h(me), "artifact": f"{me}/psi.csv"},
            "j1",
        ),
        Event(EventKind.JOB_FINISHED, a, {"status": "ok"}, "j1"),
    ]
    with nd.log.engine.begin() as c:
        nd.log.append_many(c, evs)
        nd.log.sign_head(c, nd.key)


def exports(tmp: Path, fed: Fed, **bad: object) -> list[str]:
    files = []
    for n in NAMES:
        nd = node_dir(tmp, fed, n)
        job_log(nd, n, **(bad if n == "telco" else {}))  # type: ignore[arg-type]
        out = tmp / f"{n}.jsonl"
        assert main(["audit", "export", "--node", str(nd.dir), "--out", str(out)]) == 0
        files.append(str(out))
    return files


def test_agreeing_logs_list_the_job_per_party(
    tmp_path: Path, fed: Fed, capsys: pytest.CaptureFixture[str]
) -> None:
    files = exports(tmp_path, fed)
    capsys.readouterr()
    assert main(["audit", "verify", *files, "--ca", str(fed.ca_dir / "ca.crt")]) == 0
    out = capsys.readouterr().out
    assert "the 3 logs agree on job j1" in out, out
    assert "    dataset telco_d (10 rows): columns id, telco_x" in out
    assert "    output bureau/psi.csv to bureau" in out
    assert "    bytes with telco: sent 200, received 7" in out  # the bank's line
    views = job_views([Path(f) for f in files])["j1"]
    assert views["bureau"].sent == {"bank": 300, "telco": 5}
    assert disagreements(views) == []


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ({"bureau_vote": "reject"}, "vote of bureau differs: bank has approve"),
        ({"sent_extra": 1}, "telco says it sent 8 bytes to bank, bank says it received 7"),
    ],
)
def test_logs_that_disagree_are_named(
    tmp_path: Path,
    fed: Fed,
    capsys: pytest.CaptureFixture[str],
    bad: dict[str, object],
    said: str,
) -> None:
    files = exports(tmp_path, fed, **bad)
    capsys.readouterr()
    rc = main(["audit", "verify", *files, "--ca", str(fed.ca_dir / "ca.crt"), "--job", "j1"])
    out = capsys.readouterr().out
    assert rc == 1 and f"DISAGREE: {said}" in out, out
    assert out.count(": OK:") == 3  # every log is intact: they differ on the facts
