"""Each party's data is checked before any party connects; warnings for odd but valid data."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.jobs import fake_steps
from tests.jobs.conftest import write_job, write_table
from tests.jobs.procs import Sites, veil_env
from veil.errors import ConfigError
from veil.jobs import RunOptions, load_job, run_job
from veil.jobs.validate import check_rows, step_warnings

BAD = {
    "labels 0/1/2": ("bank", r"parties\.bank\.label \(column 'y'\): is not binary"),
    "labels yes/no": ("bank", r"parties\.bank\.label \(column 'y'\): is not numeric"),
    "zero rows": ("partner", r"parties\.partner\.data: 'partner\.csv' has no rows"),
    "text feature": ("partner", r"feature column\(s\) of partner\.csv are not numeric: 'city'"),
}


@pytest.fixture(autouse=True)
def _steps_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fake_steps.echo is not None
    for k, v in veil_env().items():
        monkeypatch.setenv(k, v)


def spoil(folder: Path, case: str) -> None:
    bank, partner = pd.read_csv(folder / "bank.csv"), pd.read_csv(folder / "partner.csv")
    if case == "labels 0/1/2":
        bank["y"] = [i % 3 for i in range(len(bank))]
    elif case == "labels yes/no":
        bank["y"] = ["yes", "no"] * (len(bank) // 2)
    elif case == "zero rows":
        partner = partner[:0]
    elif case == "text feature":
        partner["city"] = ["Taipei", "Tainan"] * (len(partner) // 2)
    bank.to_csv(folder / "bank.csv", index=False)
    partner.to_csv(folder / "partner.csv", index=False)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_file_is_refused_before_any_party_starts(jobdir: Path, case: str) -> None:
    job = write_job(jobdir, ["psi", "split"])
    spoil(jobdir, case)
    _, cause = BAD[case]
    with pytest.raises(ConfigError, match=cause):
        run_job(load_job(job), jobdir / "out", RunOptions(timeout=10))
    assert not (jobdir / "out").exists()  # nothing written, no worker started, no frame sent


def test_cli_bad_file_exit_2_and_nothing_written(jobdir: Path) -> None:
    job = write_job(jobdir, ["psi", "split"])
    spoil(jobdir, "text feature")
    cmd = [sys.executable, "-m", "veil.cli", "run", str(job), "--out", str(jobdir / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("veil: error: parties.partner.data: 1 feature column(s)")
    assert "'city' holds 'Taipei' (row 1)" in proc.stderr
    assert not (jobdir / "out").exists()


@pytest.mark.parametrize("case", ["labels 0/1/2", "zero rows"])
def test_two_sites_bad_file_refused_before_any_frame_and_the_peer_is_told(
    jobdir: Path, case: str
) -> None:
    job = write_job(jobdir, ["psi", "split"])
    spoil(jobdir, case)
    bad, cause = BAD[case]
    good = "partner" if bad == "bank" else "bank"
    sites = Sites(jobdir)
    procs = {p: sites.start(job, p, timeout=30) for p in (good, bad)}
    assert procs[bad].wait() == 2
    assert procs[good].wait() == 1
    assert f"{bad} failed in its data check: parties.{bad}." in procs[good].err()
    assert re.search(cause, procs[bad].err())
    assert not sites.out(bad).exists()  # the bad party started no worker: no frame at all
    r = json.loads((sites.out(good) / "report.json").read_text())
    assert r["error"].startswith(f"{bad} failed in its data check: parties.{bad}.")
    assert [s["status"] for s in r["steps"]] == ["not run", "not run"]
    assert all(s["traffic"] == {} for s in r["steps"])  # no PSI frame crossed
    for p in procs.values():
        assert p.wait() in (1, 2) and "Traceback" not in p.err()


@pytest.mark.parametrize("mode", ["one machine", "two sites"])
def test_disjoint_sets_and_duplicate_ids_warn_in_display_and_report(
    jobdir: Path, mode: str
) -> None:
    jobdir.mkdir(parents=True)
    write_table(jobdir / "bank.csv", [f"a{i}" for i in range(40)], label=True, seed=1)
    write_table(jobdir / "partner.csv", ["b0"] * 39 + ["b1"], label=False, seed=2)
    job = write_job(jobdir, ["psi"])
    dup = "parties.partner: 38 of 40 rows repeat an id (95%); only the first row of each id"
    empty = "step 'psi': the intersection is empty (the parties share no id)"
    if mode == "one machine":
        out = {"both": jobdir / "out"}
        cmd = [sys.executable, "-m", "veil.cli", "run", str(job), "--out", str(out["both"])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        errs = {"both": proc.stderr}
    else:
        sites = Sites(jobdir)
        runs = {p: sites.start(job, p) for p in ("bank", "partner")}
        assert [r.wait() for r in runs.values()] == [0, 0]
        out = {p: sites.out(p) for p in runs}
        errs = {p: r.err() for p, r in runs.items()}
    for who, err in errs.items():
        warnings = json.loads((out[who] / "report.json").read_text())["warnings"]
        assert f"warning: {empty}" in err and warnings[-1] == empty
        if who != "bank":  # each site checks its own data only
            assert f"warning: {dup}" in err and warnings[0].startswith(dup)
        else:
            assert dup not in err and len(warnings) == 1


def test_step_after_an_empty_intersection_says_so(jobdir: Path) -> None:
    jobdir.mkdir(parents=True)
    write_table(jobdir / "bank.csv", [f"a{i}" for i in range(40)], label=True, seed=1)
    write_table(jobdir / "partner.csv", [f"b{i}" for i in range(40)], label=False, seed=2)
    res = run_job(load_job(write_job(jobdir, ["psi", "split"])), jobdir / "out")
    assert not res.ok and res.error is not None
    assert res.error.startswith("party 'bank' in step 1 'split': steps[1].split: intersection is")
    assert "intersection is empty" in res.error
    assert res.report["warnings"] == [
        "step 'psi': the intersection is empty (the parties share no id)"
    ]


def test_small_checks() -> None:
    assert step_warnings("psi", {"intersection_size": 0}) == [
        "step 'psi': the intersection is empty (the parties share no id)"
    ]
    assert step_warnings("psi", {"intersection_size": 12}) == [
        "step 'psi': the intersection is tiny (12 shared ids)"
    ]
    assert step_warnings("psi", {"intersection_size": 5000}) == []
    assert step_warnings("split", {"n_test": 3}) == []
    check_rows("psi", 0, 0, aligned=True)  # PSI itself runs on anything
    check_rows("split", 1, 10, aligned=True)
    with pytest.raises(ConfigError, match=r"steps\[1\]\.split: intersection is empty"):
        check_rows("split", 1, 0, aligned=True)


def test_a_psi_only_job_takes_text_columns_and_any_label(jobdir: Path) -> None:
    """Checks of features and labels apply only when a step uses them."""
    job = write_job(jobdir, ["psi"])
    spoil(jobdir, "text feature")
    spoil(jobdir, "labels yes/no")
    from veil.jobs.validate import check_data

    assert check_data(load_job(job), ["bank", "partner"]) == []
