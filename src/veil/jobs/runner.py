"""``veil run``: run a job, each party in its own OS process over mutual-TLS gRPC.

Locally (the default) the parent makes a throw-away CA and one certificate per
party, picks free loopback ports and starts one :mod:`veil.jobs.worker` per
party. Across machines each site runs only its own party (``RunOptions.parties``)
with the federation's certificates and everyone's addresses. Either way the
parent follows its workers' events (local pipes, not the protocol wire).

Workers write into a staging folder inside ``DIR``; only when every local party
finished every step are the staged folders renamed to ``DIR/<party>/``. A failed
run leaves no party folder, only ``DIR/report.json`` with the error naming the
party and the cause.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from veil.errors import ConfigError
from veil.fileio import write_json
from veil.jobs.display import Display
from veil.jobs.files import check_out_dir, publish, remove_outputs
from veil.jobs.report import StepRecord, build_report
from veil.jobs.spec import JobSpec, one_of
from veil.jobs.worker import WorkerConfig
from veil.net.certs import TlsFiles, throwaway_federation
from veil.net.grpc_transport import free_port

ECHO_ERRORS = ("PeerAborted",)  # a peer failing because another one did
GRACE_S = 3.0  # how long the others may take to fail by themselves after one failed
Events = queue.Queue[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class RunOptions:
    """How to run a job.

    ``timeout``: seconds a party waits for a peer (connect and each message).
    ``parties``: the parties to run here (default: all, on this machine).
    ``addresses``: ``host:port`` of every party (default: free loopback ports).
    ``listen``: where the local party's server binds (default: its address).
    ``tls``: certificates of the local parties (default: a throw-away CA; a
    federation's certificates from ``veil ca`` when running across machines).
    """

    timeout: float = 300.0
    parties: tuple[str, ...] | None = None
    addresses: Mapping[str, str] | None = None
    listen: str | None = None
    tls: Mapping[str, TlsFiles] | None = None

    def local(self, spec: JobSpec) -> tuple[str, ...]:
        """The parties this process runs, checked against the job."""
        if self.parties is None:
            return spec.party_names
        for p in self.parties:
            if p not in spec.party_names:
                raise ConfigError("--party", f"'{p}' is not in the job", one_of(spec.party_names))
        if not self.parties:
            raise ConfigError("--party", "no party to run", one_of(spec.party_names))
        return tuple(p for p in spec.party_names if p in self.parties)


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_job` returns: ``report`` is what it wrote to ``report_path``."""

    ok: bool
    error: str | None
    report: dict[str, Any]
    report_path: Path


@dataclass
class _Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    step: int = -1
    done: bool = False
    exited: bool = False
    failure: tuple[str, str] | None = None  # (kind, message)
    stopped: bool = False  # killed by us after another party failed


def run_job(
    spec: JobSpec,
    out_dir: str | Path,
    options: RunOptions | None = None,
    display: Display | None = None,
) -> RunResult:
    """Run ``spec`` with one worker process per local party; write ``out_dir/report.json``.

    Raises :class:`ConfigError` for bad input found before any party starts; a
    failure while running is returned (``ok=False``), never raised.
    """
    options = options or RunOptions()
    display = display or Display()
    local = options.local(spec)
    if options.timeout <= 0:
        raise ConfigError("--timeout", "must be positive", "e.g. --timeout 300")
    out = Path(out_dir)
    check_out_dir(out, local)
    addresses = _addresses(spec, local, options)
    out.mkdir(parents=True, exist_ok=True)
    steps = [StepRecord(s.name) for s in spec.steps]
    t0 = time.perf_counter()
    display.start(spec.name, [s.name for s in spec.steps], local)
    staging = Path(tempfile.mkdtemp(prefix=".veil-staging-", dir=out))
    error: str | None = None
    logs: dict[str, list[str]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="veil-run-") as tmp:
            tls = _tls(spec, local, Path(tmp), options)
            workers = _start(
                spec,
                local=local,
                addresses=addresses,
                tls=tls,
                tmp=Path(tmp),
                staging=staging,
                options=options,
            )
            error = _follow(workers, steps, display)
            if error is not None:
                logs = {w.name: _tail(w.log) for w in workers.values() if w.failure}
    except KeyboardInterrupt:
        error = "interrupted (Ctrl-C): all parties were stopped"
    finally:
        display.stop()
        if error is None:
            publish(staging, out, local)
        else:
            remove_outputs(out, local)
        shutil.rmtree(staging, ignore_errors=True)
    report = build_report(spec.name, local, steps, error, time.perf_counter() - t0)
    if logs:
        report["logs"] = logs  # the failed workers' last log lines (their stderr)
    path = write_json(report, out / "report.json")
    return RunResult(ok=error is None, error=error, report=report, report_path=path)


def _addresses(spec: JobSpec, local: tuple[str, ...], options: RunOptions) -> tuple[str, ...]:
    given = dict(options.addresses or {})
    for p in given:
        if p not in spec.party_names:
            raise ConfigError("--address", f"unknown party '{p}'", one_of(spec.party_names))
    if len(local) < len(spec.party_names):
        missing = [p for p in spec.party_names if p not in given]
        if missing:
            raise ConfigError(
                "--address",
                f"no address for {', '.join(missing)}",
                "give every party's HOST:PORT, e.g. --address partner=10.0.0.2:9443",
            )
    for p, a in given.items():
        host, _, port = a.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--address {p}", f"'{a}' is not HOST:PORT", "e.g. 10.0.0.2:9443")
    return tuple(given.get(p) or f"127.0.0.1:{free_port()}" for p in spec.party_names)


def _tls(
    spec: JobSpec, local: tuple[str, ...], tmp: Path, options: RunOptions
) -> Mapping[str, TlsFiles]:
    if options.tls is None:
        if len(local) < len(spec.party_names):
            raise ConfigError(
                "--cert",
                "running one party needs the federation's certificates",
                "give --ca, --cert and --key (made with veil ca)",
            )
        return throwaway_federation(spec.party_names, tmp / "ca")
    missing = [p for p in local if p not in options.tls]
    if missing:
        raise ConfigError("tls", f"no certificate for {', '.join(missing)}", "give one per party")
    for p in local:
        for what in ("ca_cert", "cert", "key"):
            f = Path(getattr(options.tls[p], what))
            if not f.is_file():
                raise ConfigError(f"tls.{p}.{what}", f"no such file '{f}'", "check the path")
    return options.tls


def _start(
    spec: JobSpec,
    *,
    local: tuple[str, ...],
    addresses: tuple[str, ...],
    tls: Mapping[str, TlsFiles],
    tmp: Path,
    staging: Path,
    options: RunOptions,
) -> dict[str, _Worker]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Wire ranks follow the sorted party names, so two sites whose job files list the
    # parties in different orders still agree on them.
    names = tuple(sorted(spec.party_names))
    workers: dict[str, _Worker] = {}
    for name in local:
        cfg = WorkerConfig(
            job=str(spec.path),
            party=name,
            out_dir=str(staging / name),
            names=names,
            addresses=tuple(addresses[spec.party_names.index(n)] for n in names),
            ca_cert=str(tls[name].ca_cert),
            cert=str(tls[name].cert),
            key=str(tls[name].key),
            timeout=options.timeout,
            listen=options.listen,
        )
        cfg_path = tmp / f"{name}.json"
        cfg_path.write_text(cfg.to_json(), encoding="utf-8")
        log = tmp / f"{name}.log"
        with log.open("wb") as logf:
            proc = subprocess.Popen(
                [sys.executable, "-m", "veil.jobs.worker", "--config", str(cfg_path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logf,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the parent, which stops them
            )
        workers[name] = _Worker(name, proc, log)
    return workers


def _reader(party: str, stream: IO[bytes], q: Events) -> None:
    for line in stream:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict):
            q.put((party, ev))
    q.put((party, {"event": "eof"}))


def _follow(workers: dict[str, _Worker], steps: list[StepRecord], display: Display) -> str | None:
    """Follow the workers' events until all exited; stop the rest once one failed."""
    q: Events = queue.Queue()
    for w in workers.values():
        assert w.proc.stdout is not None
        threading.Thread(
            target=_reader, args=(w.name, w.proc.stdout, q), daemon=True, name=f"events-{w.name}"
        ).start()
    stop_at: float | None = None
    try:
        while not all(w.exited for w in workers.values()):
            if stop_at is not None and time.monotonic() >= stop_at:
                for w in workers.values():
                    w.stopped = w.stopped or not (w.exited or w.done)
                _terminate(workers.values())
                stop_at = float("inf")
            try:
                name, ev = q.get(timeout=0.2)
            except queue.Empty:
                continue
            w = workers[name]
            _handle(w, ev, steps, display, len(workers))
            if stop_at is None and (w.failure is not None or (w.exited and not w.done)):
                stop_at = time.monotonic() + GRACE_S
    finally:
        _terminate(workers.values())
    return _root_cause(workers, steps)


def _handle(
    w: _Worker, ev: dict[str, Any], steps: list[StepRecord], display: Display, n_workers: int
) -> None:
    kind, now = ev.get("event"), time.perf_counter()
    i = int(ev.get("step", w.step))
    if kind == "step_start":
        w.step = i
        s = steps[i]
        if s.started is None:
            s.started, s.status = now, "running"
            display.update(i, status="running")
        display.update(i, party=w.name, fraction=0.0)
    elif kind == "progress":
        display.update(i, party=w.name, fraction=float(ev.get("fraction", 0.0)), msg=ev.get("msg"))
    elif kind == "step_done":
        s = steps[i]
        s.outputs[w.name] = ev.get("outputs") or {}
        s.traffic[w.name] = ev.get("traffic") or {}
        display.update(i, party=w.name, fraction=1.0)
        if len(s.outputs) == n_workers and s.started is not None:
            s.ended, s.status = now, "ok"
            display.update(i, status="ok", seconds=now - s.started)
    elif kind == "done":
        w.done = True
    elif kind == "failed":
        w.failure = (str(ev.get("kind", "Error")), str(ev.get("error", "unknown error")))
    elif kind == "eof":
        rc = w.proc.wait()
        w.exited = True
        if not w.done and w.failure is None and not w.stopped:
            w.failure = ("crash", f"crashed (exit code {rc}){_last_log_line(w.log)}")
        if w.failure is not None and 0 <= w.step < len(steps):
            steps[w.step].status = "failed"
            display.update(w.step, status="failed")


def _tail(log: Path, n: int = 20) -> list[str]:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return []
    return [ln[:500] for ln in lines[-n:]]


def _last_log_line(log: Path) -> str:
    lines = _tail(log, 1)
    return f": {lines[-1].strip()[:300]}" if lines else ""


def _terminate(workers: Iterable[_Worker]) -> None:
    """Stop every worker still running (SIGTERM, then SIGKILL) and close its stdin."""
    workers = list(workers)
    running = [w for w in workers if w.proc.poll() is None]
    for w in running:
        with contextlib.suppress(OSError):
            w.proc.terminate()
    deadline = time.monotonic() + 3.0
    for w in running:
        try:
            w.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
    for w in workers:
        if w.proc.stdin is not None:
            with contextlib.suppress(OSError):
                w.proc.stdin.close()


def _root_cause(workers: dict[str, _Worker], steps: list[StepRecord]) -> str | None:
    failed = [w for w in workers.values() if w.failure is not None]
    if not failed:
        if all(w.done for w in workers.values()):
            return None
        return "the run stopped before every party finished"

    def rank(w: _Worker) -> tuple[bool, bool]:
        # A party's own failure explains the run better than the peers' echoes of it.
        kind = w.failure[0] if w.failure else ""
        return (kind in ECHO_ERRORS, kind != "crash")

    w = min(failed, key=rank)
    assert w.failure is not None
    if 0 <= w.step < len(steps):
        where = f" in step {w.step} '{steps[w.step].name}'"
    else:
        where = " before the first step"
    msg = f"party '{w.name}'{where}: {w.failure[1]}"
    if 0 <= w.step < len(steps):
        steps[w.step].error = msg
    return msg
