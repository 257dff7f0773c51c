"""One party of a ``veil run``: ``python -m veil.jobs.worker --config FILE``.

The parent (:mod:`veil.jobs.runner`) starts one worker per local party. A worker
loads the job file and its own party's data, connects to the other parties over
mutual-TLS gRPC (a barrier: every party is up), starts heartbeats, checks that
every party runs the same job (:mod:`veil.jobs.handshake`), runs every step and
reports to the parent as JSON lines on its original stdout (local orchestration
only; protocol messages go over gRPC). Anything the step code prints goes to
stderr, which the parent keeps as a log.

Stopping: a worker that fails, is stopped by its parent (a ``{"stop": reason}``
line on stdin), gets SIGTERM or SIGINT, or loses its parent (stdin closes) tells
every peer (an abort with the reason and the step) before it exits; one that lost
its parent also removes the run's staging folder (outputs and throw-away keys).

Events: ``connecting``, ``ready``, ``waiting`` (peer, state, seconds; peer None when
no longer waiting), ``step_start``, ``progress``, ``step_done`` (outputs, seconds,
traffic), ``failed`` (kind, error, step), ``done``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from veil.errors import ConfigError, PeerAborted, VeilError
from veil.jobs.handshake import WorkerConfig
from veil.net.transport import Transport

if TYPE_CHECKING:
    from veil.net.grpc_transport import GrpcConfig, GrpcTransport

EXIT_FAILED = 1
EXIT_PARENT_GONE = 3
WAIT_SHOWN_AFTER = 2.0  # seconds a wait lasts before the display hears of it
REFUSAL_LINGER = 3.0  # seconds a party that refused a peer's certificate keeps answering

__all__ = ["Events", "WorkerConfig", "main", "run_steps"]


class Events:
    """JSON-lines events to the parent, thread-safe, with throttled progress."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._last: tuple[int, float, float] = (-1, -1.0, 0.0)  # step, fraction, time

    def emit(self, event: str, **fields: object) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        with self._lock:
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (OSError, ValueError):  # the parent is gone
                pass

    def progress(self, step: int, fraction: float, msg: str) -> None:
        now = time.monotonic()
        last_step, last_frac, last_t = self._last
        small = abs(fraction - last_frac) < 0.01 and now - last_t < 0.25
        if step == last_step and fraction < 1.0 and small:
            return
        self._last = (step, fraction, now)
        self.emit("progress", step=step, fraction=round(fraction, 4), msg=msg)


class Guard:
    """Where this worker is, and how it stops: abort to the peers first, then exit."""

    def __init__(self, cfg: WorkerConfig, events: Events) -> None:
        self.cfg = cfg
        self.events = events
        self.transport: Transport | None = None
        self.step = -1  # index of the current step, -1 before the first
        self.where = "start"  # the step as peers are told: "start", "2 'hetero_lr'", "end"
        self._lock = threading.Lock()
        self._stopping = False

    def install(self, stdin: IO[bytes]) -> None:
        """Stop on SIGTERM/SIGINT, on a stop line from the parent, and when it goes."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        threading.Thread(target=self._watch_parent, args=(stdin,), daemon=True).start()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        args = (f"stopped by {name}", 128 + signum, True, False)
        threading.Thread(target=self.stop, args=args, daemon=True).start()

    def _watch_parent(self, stdin: IO[bytes]) -> None:
        for line in stdin:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and isinstance(msg.get("stop"), str):
                self.stop(msg["stop"], EXIT_FAILED, bool(msg.get("tell_peers", True)), False)
        # Its parent died: the local peers see it too; remote ones must be told.
        self.stop("its veil run process ended", EXIT_PARENT_GONE, self.cfg.tell_peers, True)

    def tell_peers(self, reason: str) -> None:
        """Send every peer an abort naming this step (without a server if there is none yet)."""
        if self.transport is not None:
            self.transport.abort(reason, step=self.where, patience=1.0)
            return
        from veil.net.grpc_transport import send_abort

        with contextlib.suppress(Exception):  # best effort: the worker reports a bad config
            send_abort(grpc_config(self.cfg), reason, step=self.where, patience=1.0)

    def stop(self, reason: str, code: int, tell_peers: bool, cleanup: bool) -> None:
        """Tell the peers (if asked), remove the staging folder (if asked), exit."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self.events.emit("failed", kind="Stopped", error=reason, step=self.step)
        if tell_peers:
            self.tell_peers(reason)
        if cleanup and self.cfg.staging:
            from veil.jobs.staging import remove_tree

            remove_tree(Path(self.cfg.staging))
        os._exit(code)


def grpc_config(cfg: WorkerConfig) -> GrpcConfig:
    """This party's gRPC configuration."""
    from veil.net.certs import TlsFiles
    from veil.net.grpc_transport import GrpcConfig

    return GrpcConfig(
        rank=cfg.names.index(cfg.party),
        names=cfg.names,
        addresses=cfg.addresses,
        tls=TlsFiles(ca_cert=Path(cfg.ca_cert), cert=Path(cfg.cert), key=Path(cfg.key)),
        connect_timeout=cfg.timeout,
        listen=cfg.listen,
        job=cfg.route,
    )


def connect(cfg: WorkerConfig) -> GrpcTransport:
    """This party's mutual-TLS gRPC transport to every other party (server started)."""
    from veil.net.grpc_transport import GrpcTransport

    return GrpcTransport(grpc_config(cfg))


def _traffic(t: Transport, names: Sequence[str]) -> dict[str, int]:
    """Totals, and bytes per peer as ``bytes_sent:NAME`` / ``bytes_received:NAME``."""
    s = t.stats.totals()
    out = {
        "bytes_sent": s.bytes_sent,
        "bytes_received": s.bytes_received,
        "messages_sent": s.messages_sent,
        "messages_received": s.messages_received,
    }
    for rank, p in list(t.stats.peers.items()):
        if 0 <= rank < len(names):
            out[f"bytes_sent:{names[rank]}"] = p.bytes_sent
            out[f"bytes_received:{names[rank]}"] = p.bytes_received
    return out


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


def watch_waits(t: Transport, names: Sequence[str], events: Events, done: threading.Event) -> None:
    """Each second, tell the parent what this party has been waiting for (if a while)."""
    shown = False
    while not done.wait(1.0):
        waits = [w for w in t.mailbox.waiting() if time.monotonic() - w.since >= WAIT_SHOWN_AFTER]
        if not waits:
            if shown:
                events.emit("waiting", peer=None)
                shown = False
            continue
        w = waits[0]
        heard = t.mailbox.heard(w.peer)
        if w.what == "connecting" or heard is None:
            state = "connecting"
        elif heard < 3.0:
            state = "busy"  # alive (heartbeats), still working
        else:
            state = f"silent {heard:.0f} s"
        events.emit(
            "waiting", peer=names[w.peer], state=state, seconds=round(time.monotonic() - w.since)
        )
        shown = True


def run_steps(cfg: WorkerConfig, events: Events, guard: Guard) -> None:
    """Load the job and this party's data, connect, run every step, say goodbye."""
    from veil.jobs.context import StepContext
    from veil.jobs.engines import installed_engine
    from veil.jobs.handshake import check_same_job, say_done
    from veil.jobs.registry import get
    from veil.jobs.spec import empty_frame, load_frame, load_job, streamed_table
    from veil.jobs.validate import check_rows
    from veil.net.grpc_client import Refused
    from veil.net.session import Session

    spec = load_job(cfg.job, check_data=False)
    me = spec.party(cfg.party)
    table = streamed_table(spec.steps[0].name, me)  # a big table PSI streams, read later
    frame = load_frame(me) if table is None else empty_frame(me)
    current = {"step": -1}

    def on_progress(what: str, fraction: float) -> None:
        events.progress(current["step"], fraction, what)

    events.emit("connecting")
    transport = connect(cfg)
    guard.transport = transport
    stop_watch = threading.Event()
    threading.Thread(
        target=watch_waits, args=(transport, cfg.names, events, stop_watch), daemon=True
    ).start()
    engine = contextlib.ExitStack()  # this party's own engine (veil.jobs.engines), if any
    try:
        engine.enter_context(installed_engine(cfg.engine))
        transport.connect(cfg.timeout)
        transport.start_heartbeats()
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
            table=table,
        )
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        for step in spec.steps:
            current["step"] = guard.step = step.index
            guard.where = f"{step.index} '{step.name}'"
            events.emit("step_start", step=step.index)
            if ctx.table is not None and step.name != "psi":  # read it whole now
                ctx.frame, ctx.table = load_frame(me), None
            check_rows(step.name, step.index, len(ctx.frame), bool(ctx.state.aligned))
            before, t0 = _traffic(transport, cfg.names), time.perf_counter()
            ctx.session = root.sub(f"step{step.index}.{step.name}")
            outputs = get(step.name).run(ctx, step.params)
            seconds = time.perf_counter() - t0
            events.emit(
                "step_done",
                step=step.index,
                seconds=round(seconds, 4),
                outputs=json.loads(json.dumps(outputs, default=_jsonable)),
                traffic=_delta(_traffic(transport, cfg.names), before),
            )
        guard.where = "end"
        say_done(root.sub("end"))
    except BaseException as e:
        if not isinstance(e, PeerAborted):  # a peer that failed already knows
            transport.abort(describe(e), step=guard.where)
        if isinstance(e, Refused) and e.by_us:
            time.sleep(REFUSAL_LINGER)  # the peer's handshakes get refused too: it learns why
        raise
    finally:
        stop_watch.set()
        transport.close()
        engine.close()


def describe(e: BaseException) -> str:
    """A Veil error's own message; any other error with its type (``ValueError: boom``)."""
    kind = type(e).__name__
    if isinstance(e, VeilError):
        return str(e) or kind
    return f"{kind}: {e}" if str(e) else kind


def _jsonable(x: Any) -> Any:
    """numpy scalars and arrays in step outputs become plain numbers and lists."""
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m veil.jobs.worker")
    ap.add_argument("--config", required=True, help="worker config JSON written by veil run")
    args = ap.parse_args(argv)
    # Events go on the original stdout; anything else printed goes to stderr (the log).
    events = Events(os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8"))
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    cfg = WorkerConfig.from_json(Path(args.config).read_text(encoding="utf-8"))
    guard = Guard(cfg, events)
    guard.install(sys.stdin.buffer)
    try:
        run_steps(cfg, events, guard)
    except Exception as e:
        kind, msg = type(e).__name__, describe(e)
        if guard.transport is None and cfg.tell_peers:  # failed before its server was up
            guard.tell_peers(msg)
        user = isinstance(e, ConfigError)
        events.emit("failed", kind=kind, error=msg, user=user, step=guard.step)
        traceback.print_exc(file=sys.stderr)
        return EXIT_FAILED
    events.emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
