"""Output folders: atomic writes, publishing staged outputs, refusing foreign folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.errors import ConfigError
from veil.fileio import write_atomic_with as write_atomic
from veil.jobs.files import MARKER, check_out_dir, publish, remove_outputs


def stage(staging: Path, party: str, text: str) -> None:
    write_atomic(staging / party / "result.txt", lambda f: f.write(text.encode()) and None)


def test_write_atomic_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    def broken(f: object) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "x.csv", broken)
    assert list(tmp_path.iterdir()) == []


def test_publish_replaces_previous_run_and_refuses_foreign_folders(tmp_path: Path) -> None:
    out, parties = tmp_path / "out", ["bank", "partner"]
    for run in ("first", "second"):
        check_out_dir(out, parties)
        staging = tmp_path / f"staging-{run}"
        for p in parties:
            stage(staging, p, run)
        publish(staging, out, parties)
        if run == "first":
            (out / "bank" / "stale.txt").write_text("old")
    assert (out / "bank" / "result.txt").read_text() == "second"
    assert not (out / "bank" / "stale.txt").exists()
    assert (out / "partner" / MARKER).exists()
    remove_outputs(out, ["bank"])
    assert not (out / "bank").exists() and (out / "partner").exists()
    (out / "bank").mkdir()  # a folder veil run did not write: never replaced
    with pytest.raises(ConfigError, match=r"--out: .*bank' exists and was not written"):
        check_out_dir(out, parties)
    remove_outputs(out, ["bank"])
    assert (out / "bank").exists()
