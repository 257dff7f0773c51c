"""The run's private folder inside ``--out``, and publishing its results.

Every run works in ``DIR/.veil-staging-XXXX/`` (mode 0700, on the same file system
as ``DIR``): ``parties/<party>/`` holds the staged outputs, ``run/`` the run's
throw-away CA and party keys, the worker configs and logs. Nothing of it is kept:
the parent removes the folder on every exit path (success, failure, Ctrl-C,
SIGTERM); if the parent is killed outright, its workers remove it as they exit;
and a later run into the same ``DIR`` removes any it finds whose run is over
(each holds a lock file while its run lives) and says so.

Publishing is a rename of complete folders: an earlier ``DIR/<party>`` moves into
the staging folder (``old/``) only once the new one is complete, and the new one
is renamed into place. A failed run publishes nothing, so an earlier successful
run in ``DIR`` stays byte for byte: its ``report.json`` too, the failed run's
report then goes to ``failed-report.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from veil.errors import ConfigError
from veil.fileio import write_json
from veil.jobs.files import MARKER

PREFIX = ".veil-staging-"
LOCK = ".lock"
REPORT = "report.json"
FAILED_REPORT = "failed-report.json"
_YOUNG = 30.0  # seconds: a staging folder without its lock yet may be one being made


class Staging:
    """One run's private folder (see the module docstring); lock held until :meth:`close`."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=out))
        self._fd = os.open(self.root / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        self.run.mkdir(mode=0o700)
        self.parties.mkdir(mode=0o700)

    @property
    def run(self) -> Path:
        """Keys, worker configs and logs of this run."""
        return self.root / "run"

    @property
    def parties(self) -> Path:
        """Staged outputs, one folder per local party."""
        return self.root / "parties"

    def publish(self, names: Sequence[str], report: Mapping[str, object]) -> Path:
        """Rename each staged party folder into ``out``, then write ``report.json``."""
        old = self.root / "old"
        old.mkdir(exist_ok=True)
        for name in names:
            src, dst = self.parties / name, self.out / name
            src.mkdir(parents=True, exist_ok=True)
            (src / MARKER).write_text("written by veil run; replaced by the next run\n")
            if dst.exists():
                os.replace(dst, old / name)  # kept (a later run restores it) until replaced
            os.replace(src, dst)
        path = write_json(report, self.out / REPORT)
        (self.out / FAILED_REPORT).unlink(missing_ok=True)
        return path

    def close(self) -> None:
        """Remove the folder (keys, staged outputs, old outputs) and release the lock."""
        shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self._fd)


def remove_tree(path: Path) -> None:
    """Remove ``path`` entirely, one process at a time (the workers of a run whose parent
    died all clean up; a writer that re-creates a folder meanwhile is swept by the next)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for _ in range(5):
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                break
            time.sleep(0.05)
    finally:
        os.close(fd)


def write_failure_report(out: Path, report: Mapping[str, object]) -> Path:
    """Write a failed run's report without touching an earlier successful run's."""
    return write_json(report, out / (FAILED_REPORT if _holds_success(out) else REPORT))


def _holds_success(out: Path) -> bool:
    try:
        return bool(json.loads((out / REPORT).read_text())["status"] == "ok")
    except (OSError, ValueError, KeyError, TypeError):
        return False


def remove_stale(out: Path) -> list[str]:
    """Remove staging folders of runs into ``out`` that are over; say what was removed.

    Raises ConfigError if another run is still writing into ``out``.
    """
    notes = []
    for d in sorted(out.glob(PREFIX + "*")):
        if not d.is_dir():
            continue
        try:
            fd = os.open(d / LOCK, os.O_RDWR)
        except FileNotFoundError:
            if time.time() - d.stat().st_mtime < _YOUNG:
                continue  # maybe another run making its folder right now
            fd = -1
        try:
            if fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pid = (d / LOCK).read_text().strip() or "?"
                    raise ConfigError(
                        "--out",
                        f"another veil run (pid {pid}) is writing into '{out}'",
                        "wait for it to finish, or choose another --out folder",
                    ) from None
            _restore(d / "old", out)
            shutil.rmtree(d, ignore_errors=True)
            notes.append(
                f"removed {d.name} in {out}: the staged outputs and keys of an earlier run "
                "that did not finish"
            )
        finally:
            if fd >= 0:
                os.close(fd)
    return notes


def _restore(old: Path, out: Path) -> None:
    """Put back an earlier run's party folder a killed run had moved aside."""
    if not old.is_dir():
        return
    for d in old.iterdir():
        if not (out / d.name).exists():
            os.replace(d, out / d.name)
