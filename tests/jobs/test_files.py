"""Output folders: atomic writes, the run's staging folder, publishing by renaming."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from veil.errors import ConfigError
from veil.fileio import write_atomic_with as write_atomic
from veil.jobs.files import MARKER, check_out_dir
from veil.jobs.staging import Staging, remove_stale, remove_tree, write_failure_report


def stage(staging: Staging, party: str, text: str) -> None:
    write_atomic(staging.parties / party / "result.txt", lambda f: f.write(text.encode()) and None)


def test_write_atomic_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    def broken(f: object) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "x.csv", broken)
    assert list(tmp_path.iterdir()) == []


def test_publish_replaces_previous_run_and_refuses_foreign_folders(tmp_path: Path) -> None:
    out, parties = tmp_path / "out", ["bank", "partner"]
    out.mkdir()
    for run in ("first", "second"):
        check_out_dir(out, parties)
        s = Staging(out)
        assert s.root.parent == out and oct(s.root.stat().st_mode & 0o777) == "0o700"
        for p in parties:
            stage(s, p, run)
        if run == "first":
            write_atomic(s.parties / "bank" / "stale.txt", lambda f: f.write(b"old") and None)
        s.publish(parties, {"status": "ok", "run": run})
        s.close()
        assert sorted(x.name for x in out.iterdir()) == ["bank", "partner", "report.json"]
    assert (out / "bank" / "result.txt").read_text() == "second"
    assert not (out / "bank" / "stale.txt").exists()
    assert (out / "partner" / MARKER).exists()
    assert json.loads((out / "report.json").read_text())["run"] == "second"
    (out / "carol").mkdir()  # a folder veil run did not write: never replaced
    with pytest.raises(ConfigError, match=r"--out: .*carol' exists and was not written"):
        check_out_dir(out, [*parties, "carol"])


def test_failure_report_never_replaces_an_earlier_success(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert write_failure_report(out, {"status": "failed"}).name == "report.json"  # no success
    (out / "report.json").write_text(json.dumps({"status": "ok"}))
    assert write_failure_report(out, {"status": "failed"}).name == "failed-report.json"
    assert json.loads((out / "report.json").read_text()) == {"status": "ok"}
    s = Staging(out)
    s.publish([], {"status": "ok", "n": 2})
    s.close()
    assert not (out / "failed-report.json").exists()  # a new success clears the old failure


def test_stale_staging_is_removed_with_a_note_and_a_live_one_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "bank").mkdir()
    (out / "bank" / MARKER).write_text("")
    dead = Staging(out)
    stage(dead, "bank", "secret rows")
    (dead.root / "old").mkdir()
    os.replace(out / "bank", dead.root / "old" / "bank")  # killed in the middle of publishing
    os.close(dead._fd)  # the run is over (its process died): the lock is free
    live = subprocess.Popen(  # another run, alive, holds its lock
        [
            sys.executable,
            "-c",
            "import sys,time,fcntl;"
            "f=open(sys.argv[1],'a');fcntl.flock(f,fcntl.LOCK_EX);print('x',flush=True);"
            "time.sleep(60)",
            str(tmp_path / "live.lock"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert live.stdout is not None and live.stdout.readline()
        notes = remove_stale(out)
        assert notes == [
            f"removed {dead.root.name} in {out}: the staged outputs and keys of an earlier "
            "run that did not finish"
        ]
        assert not dead.root.exists() and (out / "bank" / MARKER).exists()  # restored
        busy = out / ".veil-staging-busy"
        busy.mkdir()
        os.link(tmp_path / "live.lock", busy / ".lock")
        with pytest.raises(ConfigError, match=r"--out: another veil run \(pid .*\) is writing"):
            remove_stale(out)
        assert busy.exists()
    finally:
        live.kill()
        live.wait()
    assert remove_stale(out) and not busy.exists()  # its run is over now


def test_remove_tree_is_safe_to_race(tmp_path: Path) -> None:
    root = tmp_path / ".veil-staging-x"
    for i in range(50):
        (root / f"d{i}").mkdir(parents=True)
        (root / f"d{i}" / "k.key").write_text("k")
    fd = os.open(root, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another worker is removing it right now
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys;from pathlib import Path;"
                "from veil.jobs.staging import remove_tree;remove_tree(Path(sys.argv[1]))",
                str(root),
            ]
        )
        for _ in range(2)
    ]
    os.close(fd)
    remove_tree(root)
    assert [p.wait(30) for p in procs] == [0, 0]
    assert not root.exists()
