"""Two and three nodes in one process over mutual-TLS gRPC: proposals, votes, policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.errors import NetworkError
from veil.net.certs import init_ca, issue_party
from veil.node.model import JobState, VoteState

from .conftest import postgres_db
from .nodes import job_text, make_nodes, running, wait_for

AUTO_BUREAU = """
[[policy.approve]]
partners = ["bank"]
steps = ["psi"]
datasets = ["bureau_data"]
"""


def _state(node: object, job_id: str) -> JobState | None:
    j = node.service.store.job(job_id)  # type: ignore[attr-defined]
    return None if j is None else j.state


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_policy_approves_and_both_nodes_agree(
    tmp_path: Path, ca: Path, db: str, request: pytest.FixtureRequest
) -> None:
    dbs = {"bureau": postgres_db(request)} if db == "postgres" else {}
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"], {"bureau": AUTO_BUREAU}, dbs)
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau"]), "user:op")
        for x in n.values():
            wait_for(lambda x=x: _state(x, job.id) == JobState.APPROVED, what="approved")
        votes = {v.party: v for v in n["bank"].store.votes(job.id)}
        assert votes["bureau"].state == VoteState.APPROVED
        assert votes["bureau"].reason == "approved by policy"
        assert votes["bureau"].sha256 == job.sha256
        assert votes["bureau"].info["id"] == "id" and votes["bank"].info["label"] == "y"
        kinds = [e.kind for e in n["bureau"].store.events(job.id)]
        assert kinds[:2] == ["job.proposed", "vote.approved"] and "job.approved" in kinds


def test_default_policy_waits_for_an_approver(tmp_path: Path, ca: Path) -> None:
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"])
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau"]), "user:op")
        wait_for(lambda: len(n["bureau"].store.votes(job.id)) == 2, what="votes")
        mine = {v.party: v for v in n["bureau"].store.votes(job.id)}["bureau"]
        assert mine.state == VoteState.PENDING
        assert mine.reason == (
            "waiting for an approver: the policy has no approve rules "
            "(the default approves nothing)"
        )
        assert _state(n["bank"], job.id) == JobState.PROPOSED
        n["bureau"].service.approve(job.id, "user:alice")
        for x in n.values():
            wait_for(lambda x=x: _state(x, job.id) == JobState.APPROVED, what="approved")


def test_reject_reaches_every_node_with_its_reason(tmp_path: Path, ca: Path) -> None:
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"])
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau"]), "user:op")
        wait_for(lambda: _state(n["bureau"], job.id) == JobState.PROPOSED, what="proposal")
        n["bureau"].service.reject(job.id, "not this quarter", "user:bob")
        wait_for(lambda: _state(n["bank"], job.id) == JobState.REJECTED, what="rejected")
        j = n["bank"].store.job(job.id)
        assert j is not None
        assert j.error == "party 'bureau' rejected the job: not this quarter"


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        (
            'datasets = ["other"]',
            "dataset 'bureau_data' is not allowed by policy for partner 'bank'",
        ),
        (
            'datasets = ["bureau_data"]\ncolumns = ["x0"]',
            "column 'x1' of dataset 'bureau_data' is not allowed by policy",
        ),
        (
            'datasets = ["bureau_data"]\nrecipients = ["bureau"]',
            "recipient 'bank' is not allowed by policy to receive outputs",
        ),
        ('datasets = ["bureau_data"]\nsteps = ["binning"]', "step 'psi' is not allowed"),
    ],
)
def test_policy_refusals_say_why_in_one_line(
    tmp_path: Path, ca: Path, rule: str, reason: str
) -> None:
    steps = 'steps = ["psi"]\n' if "steps" not in rule else ""
    policy = f'\n[[policy.approve]]\npartners = ["bank"]\n{steps}{rule}\n'
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"], {"bureau": policy})
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau"]), "user:op")
        wait_for(lambda: len(n["bank"].store.votes(job.id)) == 2, what="bureau's vote")
        v = {v.party: v for v in n["bank"].store.votes(job.id)}["bureau"]
        assert v.state == VoteState.PENDING
        assert reason in v.reason and "\n" not in v.reason
        assert _state(n["bank"], job.id) == JobState.PROPOSED


def test_a_job_file_hash_mismatch_is_rejected(tmp_path: Path, ca: Path) -> None:
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"], {"bureau": AUTO_BUREAU})
    with running(dirs) as n:
        text = job_text(["bank", "bureau"])
        msg = {"kind": "propose", "job_id": "forged1", "text": text, "sha256": "0" * 64}
        assert n["bank"].link.call("bureau", msg, 5.0)["ok"]
        wait_for(lambda: _state(n["bureau"], "forged1") == JobState.REJECTED, what="rejection")
        j = n["bureau"].store.job("forged1")
        assert j is not None and j.error is not None
        assert j.error.startswith("party 'bureau' rejected the job: job file hash mismatch")


def test_a_vote_for_another_hash_fails_the_job(tmp_path: Path, ca: Path) -> None:
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"])
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau"]), "user:op")
        wait_for(lambda: _state(n["bureau"], job.id) == JobState.PROPOSED, what="proposal")
        vote = {
            "kind": "vote",
            "job_id": job.id,
            "party": "bureau",
            "state": "approved",
            "sha256": "1" * 64,
            "reason": "",
            "info": {},
        }
        n["bureau"].link.call("bank", vote, 5.0)
        j = n["bank"].store.job(job.id)
        assert j is not None and j.state == JobState.FAILED
        assert j.error is not None and "job file hash mismatch: party 'bureau'" in j.error


def test_a_node_cannot_vote_for_another(tmp_path: Path, ca: Path) -> None:
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau", "telco"])
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau", "telco"]), "user:op")
        forged = {
            "kind": "vote",
            "job_id": job.id,
            "party": "telco",
            "state": "approved",
            "sha256": job.sha256,
            "reason": "",
            "info": {},
        }
        ans = n["bureau"].link.call("bank", forged, 5.0)
        assert ans == {"ok": False, "error": "'bureau' cannot vote for 'telco'"}


def test_a_certificate_from_another_ca_is_refused(tmp_path: Path, ca: Path) -> None:
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"])
    rogue = tmp_path / "rogue-ca"
    init_ca(rogue)
    issue_party(rogue, "bank", tmp_path / "rogue", hosts=("127.0.0.1", "localhost"))
    with running({"bureau": dirs["bureau"]}) as n:
        tls = dirs["bank"] / "tls"
        for f in ("bank.crt", "bank.key"):
            (tls / f).write_bytes((tmp_path / "rogue" / f).read_bytes())
        from veil.node.config import load_config
        from veil.node.peer import GrpcLink

        link = GrpcLink(load_config(dirs["bank"]))
        try:
            with pytest.raises(NetworkError, match=r"node 'bureau' at .* did not answer"):
                link.call("bureau", {"kind": "heartbeat"}, 3.0)
        finally:
            link.close()
        assert n["bureau"].store.jobs() == []


def test_three_nodes_each_by_its_own_rule(tmp_path: Path, ca: Path) -> None:
    names = ["bank", "bureau", "telco"]
    dirs = make_nodes(tmp_path, ca, names, {"bureau": AUTO_BUREAU})
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(names), "user:op")
        wait_for(lambda: len(n["telco"].store.votes(job.id)) == 3, what="votes at telco")
        assert _state(n["telco"], job.id) == JobState.PROPOSED
        n["telco"].service.approve(job.id, "user:carol")
        for x in n.values():
            wait_for(lambda x=x: _state(x, job.id) == JobState.APPROVED, what="approved")


def test_cancel_from_a_non_initiating_node(tmp_path: Path, ca: Path) -> None:
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"])
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau"]), "user:op")
        wait_for(lambda: _state(n["bureau"], job.id) == JobState.PROPOSED, what="proposal")
        n["bureau"].service.cancel(job.id, "user:dan")
        wait_for(lambda: _state(n["bank"], job.id) == JobState.CANCELLED, what="cancelled")
        j = n["bank"].store.job(job.id)
        assert j is not None and j.error == "cancelled by user:dan on node 'bureau'"


def test_a_restarted_node_fails_its_running_jobs_and_tells_peers(tmp_path: Path, ca: Path) -> None:
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"], {"bureau": AUTO_BUREAU})
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau"]), "user:op")
        for x in n.values():
            wait_for(lambda x=x: _state(x, job.id) == JobState.APPROVED, what="approved")
        assert n["bureau"].service.recover() == [job.id]
        wait_for(lambda: _state(n["bank"], job.id) == JobState.FAILED, what="failed at bank")
        j = n["bank"].store.job(job.id)
        assert j is not None and j.error == "party 'bureau': node restarted"


def test_a_silent_peer_fails_the_job_naming_peer_and_step(tmp_path: Path, ca: Path) -> None:
    from veil.node.peer import Heartbeats

    dirs = make_nodes(
        tmp_path, ca, ["bank", "bureau"], {"bureau": AUTO_BUREAU}, peer_timeout=1.5, heartbeat=0.2
    )
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau"]), "user:op")
        for x in n.values():
            wait_for(lambda x=x: _state(x, job.id) == JobState.APPROVED, what="approved")
        hb = Heartbeats(n["bank"].service, n["bank"].link)
        n["bank"].heartbeats = hb
        hb.start()
        wait_for(lambda: hb.rtt["bureau"] is not None, what="a heartbeat")
        assert hb.peers()[0]["alive"] is True
        n["bureau"].server.stop()
        wait_for(lambda: _state(n["bank"], job.id) == JobState.FAILED, 6.0, "failed")
        j = n["bank"].store.job(job.id)
        assert j is not None and j.error is not None
        assert j.error.startswith("party 'bureau' stopped answering heartbeats for ")
        assert j.error.endswith("during step 0 'psi'")
        assert hb.peers()[0]["alive"] is False


def test_a_job_that_cannot_start_fails_everywhere_with_the_field(tmp_path: Path, ca: Path) -> None:
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"], {"bureau": AUTO_BUREAU})
    with running(dirs, launch=True) as n:
        text = job_text(["bank", "bureau"], "  - psi: {result_to: [nobody]}\n")
        job = n["bank"].service.submit(text, "user:op")
        for x in n.values():
            wait_for(lambda x=x: _state(x, job.id) == JobState.FAILED, what="failed")
        j = n["bank"].store.job(job.id)
        assert j is not None and j.error is not None
        assert "cannot start: steps[0].psi.result_to" in j.error and "nobody" in j.error
        assert "\n" not in j.error


def test_a_message_lost_while_a_peer_was_away_is_resent(tmp_path: Path, ca: Path) -> None:
    from veil.node.peer import Heartbeats, PeerServer

    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"], heartbeat=0.2, peer_timeout=30.0)
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau"]), "user:op")
        wait_for(lambda: _state(n["bureau"], job.id) == JobState.PROPOSED, what="proposal")
        n["bureau"].server.stop()  # bureau is unreachable: the cancel cannot be delivered
        n["bank"].service.cancel(job.id, "user:op")
        assert _state(n["bureau"], job.id) == JobState.PROPOSED
        n["bureau"].server = PeerServer(n["bureau"].cfg, n["bureau"].service.handle)
        hb = Heartbeats(n["bank"].service, n["bank"].link)
        n["bank"].heartbeats = hb
        hb.start()
        wait_for(lambda: _state(n["bureau"], job.id) == JobState.CANCELLED, 10.0, "resent cancel")
        cancels = [e for e in n["bureau"].store.events(job.id) if e.kind == "job.cancelled"]
        assert len(cancels) == 1


def test_a_repeated_vote_is_recorded_once(tmp_path: Path, ca: Path) -> None:
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"])
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau"]), "user:op")
        wait_for(lambda: len(n["bank"].store.votes(job.id)) == 2, what="bureau's pending vote")
        for _ in range(3):
            n["bank"].service.sync("bureau", [job.id])
        votes = [e for e in n["bureau"].store.events(job.id) if e.kind.startswith("vote.")]
        assert sorted(e.kind for e in votes) == ["vote.approved", "vote.pending"]


def test_a_slow_peer_is_not_a_dead_one(tmp_path: Path, ca: Path) -> None:
    import time
    from typing import Any

    from veil.node.peer import Heartbeats

    dirs = make_nodes(
        tmp_path, ca, ["bank", "bureau"], {"bureau": AUTO_BUREAU}, peer_timeout=1.5, heartbeat=0.2
    )
    with running(dirs) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau"]), "user:op")
        for x in n.values():
            wait_for(lambda x=x: _state(x, job.id) == JobState.APPROVED, what="approved")

        class Slow:  # every answer takes 0.3 s (a busy peer or a long link)
            def call(self, party: str, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
                time.sleep(0.3)
                return n["bank"].link.call(party, msg, timeout)

        hb = Heartbeats(n["bank"].service, Slow())
        n["bank"].heartbeats = hb
        hb.start()
        time.sleep(3 * 1.5)
        assert _state(n["bank"], job.id) == JobState.APPROVED
        (peer,) = hb.peers()
        assert peer["alive"] is True and peer["rtt_ms"] >= 300
