"""One party of a local ``veil run``: ``python -m veil.jobs.worker --config FILE``.

The parent (:mod:`veil.jobs.runner`) starts one worker per party. A worker
loads the job file and its own party's data, connects to the other workers over
mutual-TLS gRPC, runs every step and reports to the parent as JSON lines on its
original stdout (local orchestration only; protocol messages go over gRPC).
Anything the step code prints goes to stderr, which the parent keeps as a log.
The worker exits when its stdin closes, so it never outlives the parent.

Events: ``ready``, ``step_start``, ``progress``, ``step_done`` (outputs, seconds,
traffic), ``failed`` (kind, error), ``done``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from veil.errors import ConfigError, VeilError
from veil.net.transport import Transport

if TYPE_CHECKING:
    from veil.jobs.spec import JobSpec
    from veil.net.session import Session


class Tag(StrEnum):
    """Messages the workers exchange themselves (all else belongs to steps)."""

    JOB = "job"  # what this party's job file says (name, parties, steps), at the start
    DONE = "done"  # this party ran every step, at the end


@dataclass(frozen=True)
class WorkerConfig:
    """What the parent tells one worker; written as JSON to a file it passes."""

    job: str
    party: str
    out_dir: str
    names: tuple[str, ...]
    addresses: tuple[str, ...]
    ca_cert: str
    cert: str
    key: str
    timeout: float
    listen: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__ | {"names": list(self.names)})

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        d = json.loads(text)
        d["names"], d["addresses"] = tuple(d["names"]), tuple(d["addresses"])
        return cls(**d)


class Events:
    """JSON-lines events to the parent, thread-safe, with throttled progress."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._last: tuple[int, float, float] = (-1, -1.0, 0.0)  # step, fraction, time

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def progress(self, step: int, fraction: float, msg: str) -> None:
        now = time.monotonic()
        last_step, last_frac, last_t = self._last
        small = abs(fraction - last_frac) < 0.01 and now - last_t < 0.25
        if step == last_step and fraction < 1.0 and small:
            return
        self._last = (step, fraction, now)
        self.emit("progress", step=step, fraction=round(fraction, 4), msg=msg)


def connect(cfg: WorkerConfig) -> Transport:
    """This party's mutual-TLS gRPC transport to every other party."""
    from veil.net.certs import TlsFiles
    from veil.net.grpc_transport import GrpcConfig, GrpcTransport

    gcfg = GrpcConfig(
        rank=cfg.names.index(cfg.party),
        names=cfg.names,
        addresses=cfg.addresses,
        tls=TlsFiles(ca_cert=Path(cfg.ca_cert), cert=Path(cfg.cert), key=Path(cfg.key)),
        connect_timeout=cfg.timeout,
        listen=cfg.listen,
    )
    return GrpcTransport(gcfg)


def _traffic(t: Transport) -> dict[str, int]:
    s = t.stats.totals()
    return {
        "bytes_sent": s.bytes_sent,
        "bytes_received": s.bytes_received,
        "messages_sent": s.messages_sent,
        "messages_received": s.messages_received,
    }


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def run_steps(cfg: WorkerConfig, events: Events) -> None:
    """Load the job and this party's data, connect, run every step, say goodbye."""
    from veil.jobs.context import StepContext
    from veil.jobs.registry import get
    from veil.jobs.spec import load_frame, load_job
    from veil.net.session import Session

    spec = load_job(cfg.job, check_data=False)
    me = spec.party(cfg.party)
    frame = load_frame(me)
    current = {"step": -1}

    def on_progress(what: str, fraction: float) -> None:
        events.progress(current["step"], fraction, what)

    transport = connect(cfg)
    try:
        root = Session(transport, cfg.names, cfg.party, timeout=cfg.timeout, progress=on_progress)
        check_same_job(root.sub("start"), spec)
        events.emit("ready")
        ctx = StepContext(
            party=cfg.party,
            session=root,
            frame=frame,
            id_col=me.id,
            label_col=me.label,
            out_dir=Path(cfg.out_dir),
            report_progress=lambda f, m: events.progress(current["step"], f, m),
        )
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        for step in spec.steps:
            current["step"] = step.index
            events.emit("step_start", step=step.index)
            before, t0 = _traffic(transport), time.perf_counter()
            ctx.session = root.sub(f"step{step.index}.{step.name}")
            outputs = get(step.name).run(ctx, step.params)
            seconds = time.perf_counter() - t0
            events.emit(
                "step_done",
                step=step.index,
                seconds=round(seconds, 4),
                outputs=json.loads(json.dumps(outputs, default=_jsonable)),
                traffic=_delta(_traffic(transport), before),
            )
        end = root.sub("end")
        for peer in end.peers():
            end.send(peer, Tag.DONE, True)
        for peer in end.peers():
            end.recv(peer, Tag.DONE)
    except BaseException as e:
        transport.abort(f"{type(e).__name__}: {e}")
        raise
    finally:
        transport.close()


def job_summary(spec: JobSpec) -> dict[str, Any]:
    """What every party's job file must agree on (data paths and columns may differ)."""
    return {
        "name": spec.name,
        "parties": sorted(spec.party_names),
        "steps": [[s.name, json.loads(json.dumps(dict(s.params)))] for s in spec.steps],
    }


def check_same_job(session: Session, spec: JobSpec) -> None:
    """Exchange job summaries with every peer; stop with a clear error if they differ."""
    mine = job_summary(spec)
    for peer in session.peers():
        session.send(peer, Tag.JOB, mine)
    for peer in session.peers():
        theirs = session.recv(peer, Tag.JOB)
        if theirs == mine:
            continue
        field, problem = "job", "differs"
        if not isinstance(theirs, dict) or theirs.get("name") != mine["name"]:
            field, problem = "name", f"'{peer}' runs job {theirs.get('name')!r}"
        elif theirs.get("parties") != mine["parties"]:
            field, problem = "parties", f"'{peer}' lists parties {theirs.get('parties')}"
        else:
            steps = theirs.get("steps") or []
            for i in range(max(len(steps), len(mine["steps"]))):
                a = mine["steps"][i] if i < len(mine["steps"]) else None
                b = steps[i] if i < len(steps) else None
                if a != b:
                    field, problem = f"steps[{i}]", f"ours is {a}, '{peer}' has {b}"
                    break
        raise ConfigError(
            field,
            f"this job file differs from party '{peer}'s: {problem}",
            "every party must run the same job file (only data paths and columns may differ)",
        )


def _jsonable(x: Any) -> Any:
    """numpy scalars and arrays in step outputs become plain numbers and lists."""
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def _exit_when_parent_goes(stdin: IO[bytes]) -> None:
    """Read stdin until EOF (the parent closed it or died), then exit at once."""
    try:
        while stdin.read(1024):
            pass
    finally:
        os._exit(3)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m veil.jobs.worker")
    ap.add_argument("--config", required=True, help="worker config JSON written by veil run")
    args = ap.parse_args(argv)
    # Events go on the original stdout; anything else printed goes to stderr (the log).
    events = Events(os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8"))
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    threading.Thread(
        target=_exit_when_parent_goes, args=(sys.stdin.buffer,), daemon=True, name="parent-watch"
    ).start()
    cfg = WorkerConfig.from_json(Path(args.config).read_text(encoding="utf-8"))
    try:
        run_steps(cfg, events)
    except Exception as e:
        kind = type(e).__name__
        msg = str(e) or kind
        if not isinstance(e, VeilError):
            msg = f"{kind}: {msg}"
        events.emit("failed", kind=kind, error=msg, user=isinstance(e, ConfigError))
        import traceback

        traceback.print_exc(file=sys.stderr)
        return 1
    events.emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
