"""``veil run``: run a job locally, each party in its own OS process over mutual-TLS gRPC.

The parent makes a throw-away CA and one certificate per party, picks free
loopback ports, starts one :mod:`veil.jobs.worker` per party and follows their
events (local pipes, not the protocol wire). Workers write into a staging
folder inside ``DIR``; only when every party finished every step are the
staged folders renamed to ``DIR/<party>/``. A failed run leaves no party
folder, only ``DIR/report.json`` with the error naming the party and the cause.
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from veil.errors import ConfigError
from veil.jobs.display import Display
from veil.jobs.federation import TlsPaths, free_port, throwaway_federation
from veil.jobs.files import write_json
from veil.jobs.spec import JobSpec
from veil.jobs.worker import WorkerConfig

MARKER = ".veil-output"  # in every party folder veil run wrote; only those are replaced
ECHO_ERRORS = ("PeerAborted",)  # a peer failing because another one did
GRACE_S = 3.0  # how long the others may take to fail by themselves after one failed


@dataclass(frozen=True)
class RunOptions:
    """How to run a job.

    ``timeout``: seconds a party waits for a peer (connect and each message).
    ``tls``: per-party certificates to use instead of a throw-away CA (tests use
    it to give one party a certificate from another CA).
    """

    timeout: float = 300.0
    tls: Mapping[str, TlsPaths] | None = None


@dataclass
class _Party:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    step: int = -1
    done: bool = False
    exited: bool = False
    failure: tuple[str, str] | None = None  # (kind, message)
    stopped: bool = False  # killed by us after another party failed


@dataclass
class _Step:
    name: str
    status: str = "not run"
    started: float | None = None
    ended: float | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    traffic: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class RunResult:
    """What ``run_job`` returns: ``report`` is what it wrote to ``report_path``."""

    ok: bool
    error: str | None
    report: dict[str, Any]
    report_path: Path


def run_job(
    spec: JobSpec,
    out_dir: str | Path,
    options: RunOptions | None = None,
    display: Display | None = None,
) -> RunResult:
    """Run ``spec`` with one worker process per party; write ``out_dir/report.json``.

    Raises :class:`ConfigError` for bad input found before the parties start
    (bad ``out_dir``); a failure while running is returned (``ok=False``).
    """
    options = options or RunOptions()
    display = display or Display()
    if options.timeout <= 0:
        raise ConfigError("--timeout", "must be positive", "e.g. --timeout 300")
    out = Path(out_dir)
    _check_out_dir(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    steps = [_Step(s.name) for s in spec.steps]
    t0 = time.perf_counter()
    display.start(spec.name, [s.name for s in spec.steps], spec.party_names)
    staging = Path(tempfile.mkdtemp(prefix=".veil-staging-", dir=out))
    error: str | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="veil-run-") as tmp:
            error = _run(
                spec, tmp=Path(tmp), staging=staging, options=options, steps=steps, display=display
            )
    except KeyboardInterrupt:
        error = "interrupted (Ctrl-C): all parties were stopped"
    finally:
        display.stop()
        if error is None:
            _publish(staging, out, spec)
        else:
            _remove_party_dirs(out, spec)
        shutil.rmtree(staging, ignore_errors=True)
    report = _report(spec, steps, error, time.perf_counter() - t0)
    path = write_json(report, out / "report.json")
    return RunResult(ok=error is None, error=error, report=report, report_path=path)


def _check_out_dir(out: Path, spec: JobSpec) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", f"'{out}' is a file", "give a folder for the results")
    for p in spec.party_names:
        d = out / p
        if d.exists() and not (d / MARKER).exists():
            raise ConfigError(
                "--out",
                f"'{d}' exists and was not written by veil run",
                "choose another --out folder (veil run replaces only its own outputs)",
            )


def _tls_files(spec: JobSpec, tmp: Path, options: RunOptions) -> Mapping[str, TlsPaths]:
    if options.tls is not None:
        missing = [p for p in spec.party_names if p not in options.tls]
        if missing:
            raise ConfigError("tls", f"no certificate for {missing}", "give one per party")
        return options.tls
    return throwaway_federation(spec.party_names, tmp / "ca")


def _start(spec: JobSpec, tmp: Path, staging: Path, options: RunOptions) -> dict[str, _Party]:
    tls = _tls_files(spec, tmp, options)
    names = spec.party_names
    addresses = tuple(f"127.0.0.1:{free_port()}" for _ in names)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    parties = {}
    for name in names:
        cfg = WorkerConfig(
            job=str(spec.path),
            party=name,
            out_dir=str(staging / name),
            names=names,
            addresses=addresses,
            ca_cert=str(tls[name].ca_cert),
            cert=str(tls[name].cert),
            key=str(tls[name].key),
            timeout=options.timeout,
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
        parties[name] = _Party(name, proc, log)
    return parties


def _reader(party: str, stream: IO[bytes], q: queue.Queue[tuple[str, dict[str, Any]]]) -> None:
    for line in stream:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict):
            q.put((party, ev))
    q.put((party, {"event": "eof"}))


def _run(
    spec: JobSpec,
    *,
    tmp: Path,
    staging: Path,
    options: RunOptions,
    steps: list[_Step],
    display: Display,
) -> str | None:
    parties = _start(spec, tmp, staging, options)
    q: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    for p in parties.values():
        assert p.proc.stdout is not None
        threading.Thread(
            target=_reader, args=(p.name, p.proc.stdout, q), daemon=True, name=f"events-{p.name}"
        ).start()
    stop_at: float | None = None
    try:
        while not all(p.exited for p in parties.values()):
            if stop_at is not None and time.monotonic() >= stop_at:
                for p in parties.values():
                    if not p.exited and not p.done:
                        p.stopped = True
                _terminate(parties.values())
                stop_at = time.monotonic() + 3600
            try:
                name, ev = q.get(timeout=0.2)
            except queue.Empty:
                continue
            p = parties[name]
            _handle(p, ev, steps, display, len(parties))
            if (p.failure is not None or (p.exited and not p.done)) and stop_at is None:
                stop_at = time.monotonic() + GRACE_S
    finally:
        _terminate(parties.values())
    return _root_cause(parties, steps)


def _handle(
    p: _Party, ev: dict[str, Any], steps: list[_Step], display: Display, n_parties: int
) -> None:
    kind, now = ev.get("event"), time.perf_counter()
    i = int(ev.get("step", p.step))
    if kind == "step_start":
        p.step = i
        s = steps[i]
        if s.started is None:
            s.started, s.status = now, "running"
            display.update(i, status="running")
        display.update(i, party=p.name, fraction=0.0)
    elif kind == "progress":
        display.update(i, party=p.name, fraction=float(ev.get("fraction", 0.0)), msg=ev.get("msg"))
    elif kind == "step_done":
        s = steps[i]
        s.outputs[p.name] = ev.get("outputs") or {}
        s.traffic[p.name] = ev.get("traffic") or {}
        display.update(i, party=p.name, fraction=1.0)
        if len(s.outputs) == n_parties and s.started is not None:
            s.ended, s.status = now, "ok"
            display.update(i, status="ok", seconds=now - s.started)
    elif kind == "done":
        p.done = True
    elif kind == "failed":
        p.failure = (str(ev.get("kind", "Error")), str(ev.get("error", "unknown error")))
    elif kind == "eof":
        rc = p.proc.wait()
        p.exited = True
        if not p.done and p.failure is None and not p.stopped:
            p.failure = ("crash", f"crashed (exit code {rc}){_last_log_line(p.log)}")
        if p.failure is not None and 0 <= p.step < len(steps):
            steps[p.step].status = "failed"
            display.update(p.step, status="failed")


def _last_log_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return f": {lines[-1].strip()[:300]}" if lines else ""


def _terminate(parties: Any) -> None:
    """Stop every worker still running: close its stdin, SIGTERM, then SIGKILL."""
    running = [p for p in parties if p.proc.poll() is None]
    for p in running:
        with contextlib.suppress(OSError):
            p.proc.terminate()
    deadline = time.monotonic() + 3.0
    for p in running:
        try:
            p.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait()
    for p in parties:
        if p.proc.stdin is not None:
            with contextlib.suppress(OSError):
                p.proc.stdin.close()


def _root_cause(parties: dict[str, _Party], steps: list[_Step]) -> str | None:
    failed = [p for p in parties.values() if p.failure is not None]
    if not failed and all(p.done for p in parties.values()):
        return None
    if not failed:
        return "the run stopped before every party finished"
    # A party's own failure explains the run better than the peers' echoes of it.
    rank = {"crash": 0}
    failed.sort(key=lambda p: (p.failure[0] in ECHO_ERRORS, rank.get(p.failure[0], 1)))  # type: ignore[index]
    p = failed[0]
    assert p.failure is not None
    where = f" in step {p.step} '{steps[p.step].name}'" if 0 <= p.step < len(steps) else ""
    if p.step < 0:
        where = " before the first step"
    msg = f"party '{p.name}'{where}: {p.failure[1]}"
    if 0 <= p.step < len(steps):
        steps[p.step].error = msg
    return msg


def _publish(staging: Path, out: Path, spec: JobSpec) -> None:
    for name in spec.party_names:
        src, dst = staging / name, out / name
        src.mkdir(parents=True, exist_ok=True)
        (src / MARKER).write_text("written by veil run; replaced by the next run\n")
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(src, dst)


def _remove_party_dirs(out: Path, spec: JobSpec) -> None:
    for name in spec.party_names:
        d = out / name
        if (d / MARKER).exists():
            shutil.rmtree(d, ignore_errors=True)


def merge_outputs(per_party: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One value per key where the parties agree, else ``{party: value}``."""
    keys: list[str] = []
    for o in per_party.values():
        keys += [k for k in o if k not in keys]
    merged: dict[str, Any] = {}
    for k in keys:
        vals = {p: o[k] for p, o in per_party.items() if k in o and o[k] is not None}
        distinct = {json.dumps(v, sort_keys=True) for v in vals.values()}
        merged[k] = next(iter(vals.values())) if len(distinct) == 1 else vals or None
    return merged


def _report(spec: JobSpec, steps: list[_Step], error: str | None, seconds: float) -> dict[str, Any]:
    rows = []
    order = spec.party_names
    for s in steps:
        s.outputs = {p: s.outputs[p] for p in order if p in s.outputs}
        s.traffic = {p: s.traffic[p] for p in order if p in s.traffic}
        row: dict[str, Any] = {
            "name": s.name,
            "status": s.status,
            "seconds": None
            if s.started is None or s.ended is None
            else round(s.ended - s.started, 3),
            "outputs": merge_outputs(s.outputs),
            "party_outputs": s.outputs,
            "traffic": {
                p: {k: t.get(k, 0) for k in ("bytes_sent", "bytes_received")}
                | {k: t[k] for k in ("messages_sent", "messages_received") if k in t}
                for p, t in s.traffic.items()
            },
        }
        if s.error:
            row["error"] = s.error
        rows.append(row)
    report: dict[str, Any] = {
        "name": spec.name,
        "status": "ok" if error is None else "failed",
        "seconds": round(seconds, 3),
        "parties": list(spec.party_names),
        "steps": rows,
    }
    if error is not None:
        report["error"] = error
    return report
