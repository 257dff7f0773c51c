"""The parent's side of ``veil run``'s party processes: start, follow, stop, explain.

Each local party runs in a :mod:`veil.jobs.worker` process of its own session (a
Ctrl-C in the terminal reaches only the parent, which stops them). The parent
follows their JSON-line events, feeds the display, and once one fails stops the
others: a worker that reported its failure has told its peers itself (an abort),
so the others get :data:`GRACE_S` to fail on their own with that cause; a worker
that crashed told nobody, so the others are stopped at once. The run's error names
the party, the step and the root cause (a party's own failure over the peers'
echoes of it); a crash names the last error the worker logged, or the signal that
killed it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from veil.fileio import write_atomic
from veil.jobs.display import Display
from veil.jobs.handshake import WorkerConfig
from veil.jobs.report import StepRecord
from veil.jobs.validate import step_warnings

ECHO_ERRORS = ("PeerAborted",)  # a peer failing because another one did
GRACE_S = 2.0  # how long the others may take to fail by themselves after one failed
STOP_WAIT_S = 3.0  # how long a stopped worker may take to tell its peers and exit
_ERROR_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b|Fatal Python error\b|Killed\b)"
)
EventQueue = queue.Queue[tuple[str, dict[str, Any]]]


@dataclass
class Worker:
    """One local party's process and what the parent learned about it."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    step: int = -1
    done: bool = False
    exited: bool = False
    failure: tuple[str, str] | None = None  # (kind, message)
    stopped: bool = False  # stopped by the parent (after another failed, or interrupted)
    killed: bool = False  # did not stop when asked and was killed


def start_worker(cfg: WorkerConfig, run_dir: Path) -> Worker:
    """Start party ``cfg.party``'s worker; its config and log live in ``run_dir``."""
    cfg_path = write_atomic(run_dir / f"{cfg.party}.json", cfg.to_json(), mode=0o600)
    log = run_dir / f"{cfg.party}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log.open("wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "veil.jobs.worker", "--config", str(cfg_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=logf,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the parent, which stops them
        )
    return Worker(cfg.party, proc, log)


def _reader(party: str, stream: IO[bytes], q: EventQueue) -> None:
    for line in stream:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict):
            q.put((party, ev))
    q.put((party, {"event": "eof"}))


class Follower:
    """Follows the workers' events until all exited; stops the rest once one failed."""

    def __init__(self, workers: dict[str, Worker], steps: list[StepRecord], display: Display):
        self.workers = workers
        self.steps = steps
        self.display = display
        self.warnings: list[str] = []
        self._q: EventQueue = queue.Queue()

    def run(self) -> None:
        for w in self.workers.values():
            assert w.proc.stdout is not None
            threading.Thread(
                target=_reader, args=(w.name, w.proc.stdout, self._q), daemon=True
            ).start()
        stop_at: float | None = None
        while not all(w.exited for w in self.workers.values()):
            if stop_at is not None and time.monotonic() >= stop_at:
                failed = [w.name for w in self.workers.values() if w.failure is not None]
                stop_workers(self.workers.values(), f"party '{failed[0]}' failed", False)
                stop_at = float("inf")
            try:
                name, ev = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            w = self.workers[name]
            self._handle(w, ev)
            if stop_at is None and w.failure is not None:
                crashed = w.failure[0] == "crash"  # told nobody: stop the others now
                stop_at = time.monotonic() + (0.0 if crashed else GRACE_S)

    def _handle(self, w: Worker, ev: dict[str, Any]) -> None:
        kind, now, steps, display = ev.get("event"), time.perf_counter(), self.steps, self.display
        i = int(ev.get("step", w.step))
        if kind == "step_start":
            w.step = i
            s = steps[i]
            if s.started is None:
                s.started, s.status = now, "running"
                display.update(i, status="running")
            display.update(i, party=w.name, fraction=0.0)
        elif kind == "progress":
            msg = ev.get("msg")
            display.update(i, party=w.name, fraction=float(ev.get("fraction", 0.0)), msg=msg)
        elif kind == "waiting":
            peer = ev.get("peer")
            state, secs = str(ev.get("state", "")), int(ev.get("seconds", 0))
            display.waiting(w.name, None if peer is None else str(peer), state, secs)
        elif kind == "step_done":
            s = steps[i]
            s.outputs[w.name] = ev.get("outputs") or {}
            s.traffic[w.name] = ev.get("traffic") or {}
            for text in step_warnings(s.name, s.outputs[w.name]):
                self.warn(text)
            display.update(i, party=w.name, fraction=1.0)
            if len(s.outputs) == len(self.workers) and s.started is not None:
                s.ended, s.status = now, "ok"
                display.update(i, status="ok", seconds=now - s.started)
        elif kind == "done":
            w.done = True
        elif kind == "failed":
            if not w.stopped:
                w.failure = (str(ev.get("kind", "Error")), str(ev.get("error", "unknown error")))
        elif kind == "eof":
            rc = w.proc.wait()
            w.exited = True
            display.waiting(w.name, None)
            if not w.done and w.failure is None and not w.stopped:
                w.failure = ("crash", crash_text(rc, w.log))
            if w.failure is not None and 0 <= w.step < len(steps):
                steps[w.step].status = "failed"
                display.update(w.step, status="failed")

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)
            self.display.note(f"warning: {text}")


def crash_text(rc: int, log: Path) -> str:
    """``crashed (killed by signal 9, SIGKILL)`` or ``crashed (exit code 3): <last error>``."""
    if rc < 0:
        try:
            name = f", {signal.Signals(-rc).name}"
        except ValueError:
            name = ""
        how = f"killed by signal {-rc}{name}"
    else:
        how = f"exit code {rc}"
    err = last_error(log)
    return f"crashed ({how})" + (f": {err}" if err else "")


def last_error(log: Path) -> str:
    """The last error line the worker logged (not warnings or other noise), or ''."""
    for line in reversed(tail(log, 200)):
        if _ERROR_LINE.match(line.strip()):
            return line.strip()[:300]
    return ""


def tail(log: Path, n: int = 20) -> list[str]:
    """The last ``n`` non-empty lines of ``log``."""
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return []
    return [ln[:500] for ln in lines[-n:]]


def stop_workers(workers: Iterable[Worker], reason: str, tell_peers: bool) -> None:
    """Ask every running worker to stop (it tells its peers if ``tell_peers``), wait a
    little, kill those still there; close their stdin."""
    workers = list(workers)
    running = [w for w in workers if w.proc.poll() is None]
    line = json.dumps({"stop": reason, "tell_peers": tell_peers}) + "\n"
    for w in running:
        w.stopped = w.stopped or not (w.done or w.failure is not None)
        with contextlib.suppress(OSError, ValueError):
            assert w.proc.stdin is not None
            w.proc.stdin.write(line.encode())
            w.proc.stdin.flush()
    deadline = time.monotonic() + STOP_WAIT_S
    for w in running:
        try:
            w.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.killed = True
            w.proc.kill()
            w.proc.wait()
    for w in workers:
        if w.proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                w.proc.stdin.close()


def root_cause(workers: dict[str, Worker], steps: list[StepRecord]) -> tuple[str | None, bool]:
    """The run's error (None if it succeeded) and whether it is a local party's own.

    A party's own failure explains the run better than the peers' echoes of it; with
    only an echo (one party per site), the error is the peer's: ``partner failed in
    step 1 'psi': ...``.
    """
    failed = [w for w in workers.values() if w.failure is not None]
    if not failed:
        if all(w.done for w in workers.values()):
            return None, False
        return "the run stopped before every party finished", True

    def rank(w: Worker) -> tuple[bool, bool]:
        kind = w.failure[0] if w.failure else ""
        return (kind in ECHO_ERRORS, kind != "crash")

    w = min(failed, key=rank)
    assert w.failure is not None
    kind, text = w.failure
    has_step = 0 <= w.step < len(steps)
    if kind in ECHO_ERRORS:
        msg, own = text, False
    else:
        where = " before the first step"
        if has_step:
            where = f" in step {w.step} '{steps[w.step].name}'"
        msg, own = f"party '{w.name}'{where}: {text}", True
    if has_step:
        steps[w.step].error = msg
    return msg, own
