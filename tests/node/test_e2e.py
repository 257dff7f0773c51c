"""Nodes as separate OS processes on loopback, driven through the ``veil`` CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from .nodes import job_text, make_nodes
from .procs import NodeProc, node_procs, status, veil, wait_state

FINAL = {"succeeded", "failed", "cancelled", "rejected"}
ANY_STEP = """
[[policy.approve]]
partners = ["bank"]
steps = ["*"]
datasets = ["bureau_data"]
"""


@pytest.fixture(autouse=True)
def _fake_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIL_STEP_MODULES", "tests.jobs.fake_steps")  # the _hang step


@pytest.mark.slow
def test_two_node_processes_run_an_approved_job(tmp_path: Path, ca: Path) -> None:
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"], {"bureau": ANY_STEP})
    (tmp_path / "job.yaml").write_text(job_text(["bank", "bureau"]))
    with node_procs(dirs) as procs:
        out = veil("job", "submit", "--node", str(dirs["bank"]), str(tmp_path / "job.yaml"))
        job_id = out.stdout.strip()
        st = wait_state(dirs["bank"], job_id, FINAL, 60)
        assert st["state"] == "succeeded", st
        assert st["parties"]["bureau"] == {"vote": "approved", "reason": "approved by policy"}
        (step,) = st["steps"]
        assert (step["name"], step["state"], step["progress"]) == ("psi", "ok", 1.0)
        assert step["seconds"] > 0 and step["bytes"] > 0
        assert wait_state(dirs["bureau"], job_id, FINAL, 30)["state"] == "succeeded"
        outs = json.loads(
            veil("job", "outputs", "--node", str(dirs["bank"]), job_id, "--json").stdout
        )
        psi = [f for f in outs["files"] if f["name"] == "bank/psi.csv"]
        assert psi and Path(psi[0]["path"]).is_file()
        ids = sorted(pd.read_csv(psi[0]["path"], dtype={"id": str})["id"])
        assert ids == sorted(f"c{i}" for i in range(10, 60))  # bank c0..59, bureau c10..69
        peers = json.loads(veil("node", "peers", str(dirs["bank"]), "--json").stdout)
        assert peers[0]["name"] == "bureau" and peers[0]["alive"] is True
        assert peers[0]["rtt_ms"] is not None and peers[0]["cert_expires"] is not None
        logs = veil("job", "logs", "--node", str(dirs["bureau"]), job_id).stdout
        assert "job.proposed" in logs and "job.succeeded" in logs
        # wrong role from the CLI: one line, exit code 1
        tok = veil("node", "token", str(dirs["bank"]), "--role", "auditor").stdout.strip()
        r = veil(
            "dataset",
            "add",
            "--node",
            str(dirs["bank"]),
            "--token",
            tok,
            "x",
            str(tmp_path / "data" / "bank.csv"),
            "--id",
            "id",
            check=False,
        )
        assert r.returncode == 1
        assert r.stderr.strip().splitlines() == [
            "veil: error: node 'bank' refused (403): "
            "role 'auditor' may not do this (needs operator)"
        ]
        r = veil("job", "list", "--node", str(dirs["bank"]), "--token", "veil_nope", check=False)
        assert r.returncode == 1 and "refused (401): unknown token" in r.stderr
        for p in procs.values():
            assert p.stop(signal.SIGINT) == 0, p.tail()


def _running(node: Path, job_id: str) -> None:
    wait_state(node, job_id, {"running"} | FINAL, 60)
    st = status(node, job_id)
    assert st["state"] == "running", st


@pytest.mark.slow
def test_kill_9_fails_the_others_within_peer_timeout_then_restart(tmp_path: Path, ca: Path) -> None:
    names = ["bank", "bureau"]
    dirs = make_nodes(tmp_path, ca, names, {"bureau": ANY_STEP}, peer_timeout=3.0, heartbeat=0.5)
    (tmp_path / "job.yaml").write_text(job_text(names, "  - _hang: {}\n"))
    with node_procs(dirs) as procs:
        job_id = veil(
            "job", "submit", "--node", str(dirs["bank"]), str(tmp_path / "job.yaml")
        ).stdout.strip()
        _running(dirs["bank"], job_id)
        _running(dirs["bureau"], job_id)
        tree = {n: _job_tree(dirs[n] / "jobs" / job_id) for n in names}
        assert all(len(t) >= 2 for t in tree.values()), tree  # job process + worker each
        killed_at = time.time()
        procs["bureau"].proc.send_signal(signal.SIGKILL)
        procs["bureau"].proc.wait(10)
        st = wait_state(dirs["bank"], job_id, FINAL, 20.0)  # polling through the CLI is slow
        assert st["updated"] - killed_at <= 3.0 + 5.0  # when the bank marked it failed
        assert st["state"] == "failed"
        # one line naming the peer and the step: the heartbeat verdict, or the abort the
        # bureau's job process sent as it went down with its node (whichever came first)
        err = st["error"]
        assert "\n" not in err and "bureau" in err and "step 0 '_hang'" in err, err
        assert err.startswith(("party 'bureau' stopped answering heartbeats", "bureau failed"))
        for n in names:  # the killed node's job process and worker went away with it
            _gone(tree[n])
        # the restarted node marks the job failed and tells the bank (already failed there)
        procs["bureau"] = NodeProc(dirs["bureau"])
        st = wait_state(dirs["bureau"], job_id, FINAL, 10)
        assert (st["state"], st["error"]) == ("failed", "party 'bureau': node restarted")


@pytest.mark.slow
def test_a_restarted_node_fails_its_job_on_every_node(tmp_path: Path, ca: Path) -> None:
    names = ["bank", "bureau"]
    dirs = make_nodes(tmp_path, ca, names, {"bureau": ANY_STEP}, peer_timeout=30.0)
    (tmp_path / "job.yaml").write_text(job_text(names, "  - _hang: {}\n"))
    with node_procs(dirs) as procs:
        job_id = veil(
            "job", "submit", "--node", str(dirs["bank"]), str(tmp_path / "job.yaml")
        ).stdout.strip()
        _running(dirs["bureau"], job_id)
        procs["bureau"].proc.send_signal(signal.SIGKILL)
        procs["bureau"].proc.wait(10)
        procs["bureau"] = NodeProc(dirs["bureau"])  # back well within peer_timeout
        st = wait_state(dirs["bureau"], job_id, FINAL, 10)
        assert (st["state"], st["error"]) == ("failed", "party 'bureau': node restarted")
        st = wait_state(dirs["bank"], job_id, FINAL, 10)  # told, or aborted first
        assert st["state"] == "failed" and "bureau" in st["error"], st


@pytest.mark.slow
def test_cancel_from_a_non_initiating_node_stops_every_party(tmp_path: Path, ca: Path) -> None:
    names = ["bank", "bureau"]
    dirs = make_nodes(tmp_path, ca, names, {"bureau": ANY_STEP})
    (tmp_path / "job.yaml").write_text(job_text(names, "  - _hang: {}\n"))
    with node_procs(dirs):
        job_id = veil(
            "job", "submit", "--node", str(dirs["bank"]), str(tmp_path / "job.yaml")
        ).stdout.strip()
        _running(dirs["bank"], job_id)
        _running(dirs["bureau"], job_id)
        tree = {n: _job_tree(dirs[n] / "jobs" / job_id) for n in names}
        assert all(len(t) >= 2 for t in tree.values()), tree
        asked = time.time()
        veil("job", "cancel", "--node", str(dirs["bureau"]), job_id)
        stopped = time.time()
        for n in names:
            st = wait_state(dirs[n], job_id, FINAL, 20)
            assert st["updated"] - asked < 5.0  # cancelled there within seconds
            assert st["state"] == "cancelled"
            assert st["error"].startswith("cancelled by user:admin-") and st["error"].endswith(
                "on node 'bureau'"
            )
        for n in names:  # every job process and worker is gone within seconds
            _gone(tree[n], timeout=10.0)
        assert time.time() - stopped < 15.0


def _job_tree(work: Path) -> set[int]:
    """The job process(es) of this job folder and all their descendants."""
    pids = set()
    for pid in _job_procs(work):
        with contextlib.suppress(psutil.Error):
            pids |= {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
    return pids


def _gone(pids: set[int], timeout: float = 10.0) -> None:
    def alive() -> list[int]:
        out = []
        for p in pids:
            with contextlib.suppress(psutil.Error):
                if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
        return out

    deadline = time.monotonic() + timeout
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(), f"processes still running: {alive()}"


def _job_procs(work: Path) -> list[int]:
    """Processes whose command line names this job's folder (jobproc, its worker)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(work) in cmd:
                found.append(int(pid))
    return found


@pytest.mark.slow
def test_three_node_processes_policy_on_one_by_hand_on_another(tmp_path: Path, ca: Path) -> None:
    names = ["bank", "bureau", "telco"]
    dirs = make_nodes(tmp_path, ca, names, {"bureau": ANY_STEP})
    (tmp_path / "job.yaml").write_text(job_text(names, "  - _echo: {}\n"))
    with node_procs(dirs):
        job_id = veil(
            "job", "submit", "--node", str(dirs["bank"]), str(tmp_path / "job.yaml")
        ).stdout.strip()
        deadline = time.monotonic() + 30
        while status(dirs["telco"], job_id)["parties"]["bureau"]["vote"] != "approved":
            assert time.monotonic() < deadline, status(dirs["telco"], job_id)
            time.sleep(0.3)
        st = status(dirs["telco"], job_id)
        assert st["state"] == "proposed" and st["parties"]["telco"]["vote"] == "pending"
        approver = veil("node", "token", str(dirs["telco"]), "--role", "approver").stdout.strip()
        veil("job", "approve", "--node", str(dirs["telco"]), "--token", approver, job_id)
        for n in names:
            st = wait_state(dirs[n], job_id, FINAL, 60)
            assert st["state"] == "succeeded", st
        out = json.loads((dirs["telco"] / "jobs" / job_id / "out" / "report.json").read_text())
        assert out["steps"][0]["outputs"]["peer_rows"] == {"bank": 60, "bureau": 60}
