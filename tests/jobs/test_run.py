"""``veil run`` end to end: one OS process per party over loopback mutual-TLS gRPC."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

from tests.jobs import fake_steps
from tests.jobs.conftest import write_job, write_table
from veil.jobs import RunOptions, load_job, run_job
from veil.net import certs, grpc_transport

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fake_step_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers import the test-only steps too (and find the tests package)."""
    assert fake_steps.echo is not None  # registered in this process by the import
    monkeypatch.setenv("VEIL_STEP_MODULES", "tests.jobs.fake_steps")
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{path}" if path else str(ROOT))


def party_dirs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def test_cli_runs_steps_in_separate_processes(jobdir: Path) -> None:
    job = write_job(jobdir, ["_echo", "_write"])
    out = jobdir / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "veil.cli", "run", str(job), "--out", str(out), "--quiet"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["name"] == "test-job" and report["status"] == "ok"
    echo, write = report["steps"]
    assert [echo["name"], write["name"]] == ["_echo", "_write"]
    assert echo["status"] == "ok" and echo["seconds"] >= 0
    # Agreed values merge to one; per-party values stay per party.
    assert echo["outputs"]["constant"] == 42
    assert echo["outputs"]["rows"] == {"bank": 40, "partner": 50}
    assert echo["party_outputs"]["bank"]["peer_rows"] == {"partner": 50}
    for party in ("bank", "partner"):
        t = echo["traffic"][party]
        assert t["bytes_sent"] > 0 and t["bytes_received"] > 0
        assert t["messages_sent"] == 1 and t["messages_received"] == 1
        assert write["traffic"][party]["bytes_sent"] == 0
    assert echo["traffic"]["bank"]["bytes_sent"] == echo["traffic"]["partner"]["bytes_received"]
    assert (out / "bank" / "partial.txt").read_text() == "half done\n"
    assert party_dirs(out) == ["bank", "partner", "report.json"]


def test_crash_midway_fails_fast_names_party_and_leaves_no_outputs(jobdir: Path) -> None:
    job = write_job(jobdir, ["_write", {"_crash": {"party": "partner"}}])
    out = jobdir / "out"
    timeout = 60.0
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "veil.cli",
            "run",
            str(job),
            "--out",
            str(out),
            "--quiet",
            "--timeout",
            str(timeout),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1
    assert "party 'partner' in step 1 '_crash': crashed (exit code 3)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < timeout / 2  # the parent stopped the waiting party, no timeout needed
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed" and "partner" in report["error"]
    assert [s["status"] for s in report["steps"]] == ["ok", "failed"]
    assert party_dirs(out) == ["report.json"]  # partial.txt of step 0 is gone too


def test_ctrl_c_stops_every_worker(jobdir: Path) -> None:
    job = write_job(jobdir, ["_write", "_hang"])
    out = jobdir / "out"
    cmd = [sys.executable, "-m", "veil.cli", "run", str(job), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.glob(".veil-staging-*/parties/bank/partial.txt")):  # step 0 is done
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)
    workers = [p for p in psutil.Process(proc.pid).children() if "veil.jobs.worker" in p.cmdline()]
    assert len(workers) == 2
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted" in err
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed" and "interrupted" in report["error"]
    assert party_dirs(out) == ["report.json"]


def test_failing_step_reports_root_cause_not_echo(jobdir: Path) -> None:
    spec = load_job(write_job(jobdir, [{"_fail": {"party": "bank"}}, "_echo"]))
    res = run_job(spec, jobdir / "out", RunOptions(timeout=60))
    assert not res.ok and res.error is not None
    assert res.error.startswith("party 'bank' in step 0 '_fail': ValueError: boom")
    assert res.report["steps"][1]["status"] == "not run"
    assert any("ValueError: boom" in line for line in res.report["logs"]["bank"])
    assert party_dirs(jobdir / "out") == ["report.json"]


def test_peer_certificate_from_another_ca_is_refused(jobdir: Path) -> None:
    spec = load_job(write_job(jobdir, ["_echo"]))
    ours = certs.throwaway_federation(["bank", "partner"], jobdir / "ca-ours")
    theirs = certs.throwaway_federation(["bank", "partner"], jobdir / "ca-theirs")
    tls = {"bank": ours["bank"], "partner": theirs["partner"]}
    timeout = 8.0
    t0 = time.monotonic()
    res = run_job(spec, jobdir / "out", RunOptions(timeout=timeout, tls=tls))
    assert time.monotonic() - t0 < timeout + 15
    assert not res.ok and res.error is not None
    assert res.error.startswith("party 'bank' before the first step: refused party partner at")
    assert "its certificate is not issued by the federation CA" in res.error
    assert res.report["status"] == "failed"
    assert party_dirs(jobdir / "out") == ["report.json"]


def run_sites(jobdir: Path, jobs: dict[str, Path]) -> dict[str, tuple[int, str]]:
    """Run each party with its own ``veil run --party`` and job file, as two sites would."""
    fed = certs.throwaway_federation(["bank", "partner"], jobdir / "ca")
    ports = {p: grpc_transport.free_port() for p in ("bank", "partner")}
    procs = {}
    for party, job in jobs.items():
        cmd = [sys.executable, "-m", "veil.cli", "run", str(job), "--quiet", "--timeout", "60"]
        cmd += ["--out", str(jobdir / f"site-{party}"), "--party", party]
        cmd += [f"--address={p}=127.0.0.1:{port}" for p, port in ports.items()]
        tls = fed[party]
        if party == "bank":  # the folder 'veil ca issue' writes
            cmd += ["--tls", str(tls.cert.parent)]
        else:
            cmd += ["--ca", str(tls.ca_cert), "--cert", str(tls.cert), "--key", str(tls.key)]
        procs[party] = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    results = {}
    for party, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        results[party] = (proc.returncode, err)
    return results


def test_two_sites_each_run_their_own_party(jobdir: Path) -> None:
    """The multi-machine mode: one ``veil run --party`` per site, federation certificates.

    The partner's job file lists the parties in the other order: ranks still agree.
    """
    bank_job = write_job(jobdir, ["_echo"])
    swapped = yaml.safe_load(bank_job.read_text())
    swapped["parties"] = dict(reversed(list(swapped["parties"].items())))
    partner_job = jobdir / "partner-job.yaml"
    partner_job.write_text(yaml.safe_dump(swapped, sort_keys=False))
    results = run_sites(jobdir, {"bank": bank_job, "partner": partner_job})
    for party, (code, err) in results.items():
        assert code == 0, err
        out = jobdir / f"site-{party}"
        assert party_dirs(out) == [party, "report.json"]
        report = json.loads((out / "report.json").read_text())
        assert report["status"] == "ok" and report["parties"] == [party]
        (step,) = report["steps"]
        assert step["outputs"]["rows"] == {"bank": 40, "partner": 50}[party]
        assert step["traffic"][party]["bytes_received"] > 0


def test_two_sites_with_different_steps_fail_at_once(jobdir: Path) -> None:
    bank_job = write_job(jobdir, ["_echo", {"_fail": {"party": "bank"}}])
    other = yaml.safe_load(bank_job.read_text())
    other["steps"] = ["_echo", {"_fail": {"party": "partner"}}]
    partner_job = jobdir / "partner-job.yaml"
    partner_job.write_text(yaml.safe_dump(other, sort_keys=False))
    results = run_sites(jobdir, {"bank": bank_job, "partner": partner_job})
    for party, (code, err) in results.items():
        assert code == 1
        assert f"party '{party}' before the first step: steps[1]: this job file differs" in err
        report = json.loads((jobdir / f"site-{party}" / "report.json").read_text())
        assert report["status"] == "failed"
        assert [s["status"] for s in report["steps"]] == ["not run", "not run"]


def test_psi_job_aligns_rows_and_writes_intersection(jobdir: Path) -> None:
    rng = np.random.default_rng(7)
    universe = [f"cust-{i:04d}" for i in rng.permutation(400)]
    common, only_bank, only_partner = universe[:120], universe[120:220], universe[220:300]
    bank_ids = common + only_bank + common[:5]  # duplicates: first occurrence counts
    partner_ids = list(rng.permutation(common + only_partner))
    jobdir.mkdir(parents=True)
    bank = write_table(jobdir / "bank.csv", bank_ids, label=True, seed=3)
    partner = write_table(jobdir / "partner.csv", partner_ids, label=False, seed=4)
    job = write_job(jobdir, [{"psi": {"result_to": ["bank", "partner"], "batch_size": 64}}])
    out = jobdir / "out"
    res = run_job(load_job(job), out, RunOptions(timeout=60))
    assert res.ok, res.error
    (step,) = res.report["steps"]
    assert step["name"] == "psi" and step["status"] == "ok"
    assert step["outputs"]["intersection_size"] == 120
    assert step["outputs"]["n_input"] == {"bank": 225, "partner": 200}
    assert step["party_outputs"]["bank"]["duplicates_dropped"] == 5
    for party in ("bank", "partner"):
        assert step["traffic"][party]["bytes_sent"] > 120 * 32
    got_bank = pd.read_csv(out / "bank" / "psi.csv", dtype={"id": str})
    got_partner = pd.read_csv(out / "partner" / "psi.csv", dtype={"id": str})
    assert list(got_bank["id"]) == sorted(common)  # sorted by id: the same in every run
    assert list(got_bank["id"]) == list(got_partner["id"])  # aligned row for row
    # Each party's rows are its own rows (first occurrence), columns untouched.
    first = bank.drop_duplicates("id").set_index("id").loc[got_bank["id"]].reset_index()
    pd.testing.assert_frame_equal(got_bank, first, check_dtype=False)
    assert list(got_partner.columns) == list(partner.columns)
    written = json.loads((out / "report.json").read_text())
    assert written == json.loads(json.dumps(res.report))


def test_psi_result_to_one_party(jobdir: Path) -> None:
    job = write_job(jobdir, [{"psi": {"result_to": ["bank"]}}])
    res = run_job(load_job(job), jobdir / "out", RunOptions(timeout=60))
    assert res.ok, res.error
    (step,) = res.report["steps"]
    assert step["outputs"]["intersection_size"] == 20  # c20..c39
    assert "intersection_size" not in step["party_outputs"]["partner"]
    assert (jobdir / "out" / "bank" / "psi.csv").exists()
    assert not (jobdir / "out" / "partner" / "psi.csv").exists()
