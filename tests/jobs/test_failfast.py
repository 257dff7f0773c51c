"""Issue 16, "fail fast and clean": each failure a bank operator meets, as real processes.

Two-machine mode is two ``veil run --party`` processes on loopback, each with its own
``--out``; one-machine mode is one ``veil run`` with a worker process per party. Every
test says how fast the other side stops and what it says, and checks the disk.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.jobs import fake_steps
from tests.jobs.conftest import write_job
from tests.jobs.procs import Sites, leftovers, staged, start, veil_env, wait_for
from veil.net import certs

STOP_S = 5.0  # the other party exits within this many seconds


@pytest.fixture(autouse=True)
def _steps_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fake_steps.hang is not None  # the workers import the same module
    for k, v in veil_env().items():
        monkeypatch.setenv(k, v)


def report(out: Path, name: str = "report.json") -> dict:  # type: ignore[type-arg]
    return json.loads((out / name).read_text())  # type: ignore[no-any-return]


# -- a peer that dies, is interrupted or stopped ------------------------------------
@pytest.mark.parametrize("how", ["kill -9", "Ctrl-C", "SIGTERM", "kill -9 worker"])
def test_two_sites_the_other_party_stops_within_seconds(jobdir: Path, how: str) -> None:
    job = write_job(jobdir, ["_write", "_hang"])
    sites = Sites(jobdir)
    bank, partner = sites.start(job, "bank", timeout=60), sites.start(job, "partner", timeout=60)
    for p in ("bank", "partner"):
        wait_for(lambda p=p: staged(sites.out(p), p), f"{p} to finish step 0")  # type: ignore[misc]
    time.sleep(0.3)
    workers = partner.workers()
    t0 = time.monotonic()
    if how == "kill -9":  # the partner's veil run; its worker tells the bank and cleans up
        partner.proc.kill()
    elif how == "Ctrl-C":
        partner.proc.send_signal(signal.SIGINT)
    elif how == "SIGTERM":
        partner.proc.send_signal(signal.SIGTERM)
    else:  # its worker crashes; its veil run tells the bank
        workers[0].kill()
    assert bank.wait(30) == 1
    assert time.monotonic() - t0 < STOP_S, bank.err()
    code = partner.wait(30)
    cause = {
        "kill -9": "its veil run process ended",
        "Ctrl-C": "interrupted (Ctrl-C)",
        "SIGTERM": "interrupted (SIGTERM)",
        "kill -9 worker": "crashed (killed by signal 9, SIGKILL)",
    }[how]
    assert f"run failed: partner failed in step 1 '_hang': {cause}" in bank.err()
    assert report(sites.out("bank"))["error"].startswith("partner failed in step 1 '_hang'")
    assert [s["status"] for s in report(sites.out("bank"))["steps"]] == ["ok", "failed"]
    assert code == {"kill -9": -9, "Ctrl-C": 130, "SIGTERM": 143, "kill -9 worker": 1}[how]
    if how != "kill -9":
        assert "run failed:" in partner.err() and "Traceback" not in partner.err()
        assert report(sites.out("partner"))["status"] == "failed"
    psutil.wait_procs(workers, timeout=10)
    assert leftovers(sites.out("bank"), sites.out("partner")) == []


def test_two_sites_whole_partner_killed_bank_stops_and_next_run_sweeps(jobdir: Path) -> None:
    """The partner's veil run and worker both die at once: nobody tells the bank, its
    heartbeats find the partner's port closed. The partner's staging folder stays
    (no process was left to remove it): the next run removes it and says so."""
    job = write_job(jobdir, ["_write", "_hang"])
    sites = Sites(jobdir)
    bank, partner = sites.start(job, "bank", timeout=60), sites.start(job, "partner", timeout=60)
    for p in ("bank", "partner"):
        wait_for(lambda p=p: staged(sites.out(p), p), f"{p} to finish step 0")  # type: ignore[misc]
    time.sleep(0.3)
    workers = partner.workers()
    t0 = time.monotonic()
    everyone = [psutil.Process(partner.proc.pid), *workers]
    for p in everyone:  # frozen first, so that none sees another die and tells the bank
        p.suspend()
    for p in everyone:
        p.kill()
    assert bank.wait(30) == 1
    assert time.monotonic() - t0 < STOP_S, bank.err()
    assert "in step 1 '_hang': partner is gone: its address 127.0.0.1:" in bank.err()
    stale = list(sites.out("partner").glob(".veil-staging-*"))
    assert len(stale) == 1 and list(stale[0].rglob("partial.txt"))
    again = start(
        [str(write_job(jobdir / "next", ["_echo"])), "--out", str(sites.out("partner"))],
        jobdir / "next.log",
    )
    assert again.wait() == 0, again.err()
    assert f"removed {stale[0].name} in {sites.out('partner')}: the staged outputs" in again.err()
    assert leftovers(sites.out("partner")) == []


@pytest.mark.parametrize("how", ["SIGTERM", "kill -9"])
def test_one_machine_stop_leaves_no_staging_and_no_key(jobdir: Path, how: str) -> None:
    job = write_job(jobdir, ["_write", "_hang"])
    out, tmp = jobdir / "out", jobdir / "tmp"
    run = start([str(job), "--out", str(out)], jobdir / "run.log", veil_env(tmp))
    wait_for(lambda: staged(out, "bank") and staged(out, "partner"), "step 0")
    time.sleep(0.3)
    workers = run.workers()
    assert len(workers) == 2
    assert list(out.glob(".veil-staging-*/run/tls/*/*.key"))  # the run's keys live in --out
    t0 = time.monotonic()
    run.proc.send_signal(signal.SIGTERM) if how == "SIGTERM" else run.proc.kill()
    code = run.wait(30)
    _, alive = psutil.wait_procs(workers, timeout=STOP_S)
    assert not alive and time.monotonic() - t0 < STOP_S
    if how == "SIGTERM":
        assert code == 143
        assert "veil: run failed: interrupted (SIGTERM): all parties were stopped" in run.err()
        assert report(out)["status"] == "failed" and "SIGTERM" in report(out)["error"]
        assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    else:
        assert code == -9
        wait_for(lambda: not leftovers(out), "the workers to remove the staging folder", 10)
        assert list(out.iterdir()) == []
    assert leftovers(out) == [] and list(tmp.iterdir()) == []  # nothing in the system tmp


def test_one_machine_crash_names_the_signal_and_the_last_error(jobdir: Path) -> None:
    from veil.jobs import RunOptions, load_job, run_job

    t0 = time.monotonic()
    res = run_job(load_job(write_job(jobdir, [{"_kill9": {"party": "partner"}}])), jobdir / "a")
    assert time.monotonic() - t0 < 30
    assert res.error == "party 'partner' in step 0 '_kill9': crashed (killed by signal 9, SIGKILL)"
    spec = load_job(write_job(jobdir, [{"_logcrash": {"party": "bank"}}]))
    res = run_job(spec, jobdir / "b", RunOptions(timeout=60))
    assert res.error == (
        "party 'bank' in step 0 '_logcrash': crashed (exit code 3): "
        "OSError: [Errno 122] Disk quota exceeded"
    )
    assert not any("RuntimeWarning" in line for line in res.report["logs"]["bank"])


# -- certificates --------------------------------------------------------------------
@pytest.mark.parametrize("case", ["another CA", "the bank's certificate"])
def test_two_sites_certificate_refused_both_sides_say_so(jobdir: Path, case: str) -> None:
    job = write_job(jobdir, ["_echo"])
    sites = Sites(jobdir)
    good = sites.fed["partner"]
    if case == "another CA":
        evil = certs.throwaway_federation(["partner"], jobdir / "evil")["partner"]
        tls = certs.TlsFiles(good.ca_cert, evil.cert, evil.key)
        mine = "refused by bank: certificate not issued by the federation CA"
        theirs = "its certificate is not issued by the federation CA"
    else:  # the partner impersonates the bank
        tls = sites.fed["bank"]
        mine = "refused by bank: certificate issued to 'bank', not 'partner'"
        theirs = "its certificate is not issued to the party name 'partner'"
    partner = sites.start(job, "partner", timeout=60, tls=tls)
    time.sleep(1.0)  # the partner is up first, waiting for the bank
    bank = sites.start(job, "bank", timeout=60)
    assert bank.wait(60) == 1 and partner.wait(60) == 1
    assert "party 'bank' before the first step: refused party partner at 127.0.0.1:" in bank.err()
    assert theirs in bank.err()
    assert f"party 'partner' before the first step: {mine}" in partner.err()
    for p in (bank, partner):
        assert time.monotonic() - p.started < 30  # not the 60 s timeout
        assert "Connection refused" not in p.err()


# -- one party alone -----------------------------------------------------------------
def test_only_one_party_started_says_whom_it_waits_for(jobdir: Path) -> None:
    job = write_job(jobdir, ["_echo"])
    sites = Sites(jobdir)
    bank = sites.start(job, "bank", timeout=5)
    assert bank.wait(60) == 1
    err = bank.err()
    assert "waiting for partner (connecting, " in err  # the progress lines (no terminal)
    assert "party 'bank' before the first step: cannot deliver to party partner" in err
    assert "check that partner is running" in err


# -- results are never lost ----------------------------------------------------------
@pytest.mark.parametrize("mode", ["one machine", "two sites"])
def test_failed_run_leaves_an_earlier_good_out_byte_for_byte(jobdir: Path, mode: str) -> None:
    from veil.jobs import RunOptions, load_job, run_job

    good = write_job(jobdir, ["_echo", "_write"])
    bad = write_job(jobdir / "bad", ["_write", {"_fail": {"party": "partner"}}])
    sites = Sites(jobdir)

    def run(job: Path) -> list[int]:
        if mode == "one machine":
            res = run_job(load_job(job), sites.out("bank"), RunOptions(timeout=30))
            return [0 if res.ok else 1]
        procs = [sites.start(job, p) for p in ("bank", "partner")]
        return [p.wait() for p in procs]

    assert all(code == 0 for code in run(good))
    outs = [sites.out("bank")] + ([sites.out("partner")] if mode == "two sites" else [])

    def snapshot() -> dict[str, bytes]:
        return {str(f): f.read_bytes() for o in outs for f in sorted(o.rglob("*")) if f.is_file()}

    before = snapshot()
    assert any(f.endswith("partial.txt") for f in before) and all(
        report(o)["status"] == "ok" for o in outs
    )
    assert all(code != 0 for code in run(bad))
    after = snapshot()
    failed = {f: b for f, b in after.items() if f.endswith("failed-report.json")}
    assert {f: b for f, b in after.items() if f not in failed} == before
    assert len(failed) == len(outs)
    for o in outs:
        assert report(o, "failed-report.json")["status"] == "failed"
        assert leftovers(o) == []


def test_two_sites_a_party_that_fails_before_its_server_is_up_still_tells(jobdir: Path) -> None:
    """The partner's port is taken: it cannot listen, yet the bank hears why at once."""
    import socket

    job = write_job(jobdir, ["_echo"])
    sites = Sites(jobdir)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", sites.ports["partner"]))
        squatter.listen()
        bank = sites.start(job, "bank", timeout=60)
        time.sleep(1.0)
        partner = sites.start(job, "partner", timeout=60)
        assert partner.wait() == 1
        t0 = time.monotonic()
        assert bank.wait() == 1
        assert time.monotonic() - t0 < STOP_S
    assert "party 'partner' before the first step: party partner cannot listen on" in partner.err()
    assert "run failed: partner failed before the first step: party partner cannot listen" in (
        bank.err()
    )
