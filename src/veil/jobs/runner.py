"""``veil run``: run a job, each party in its own OS process over mutual-TLS gRPC.

Locally (the default) the parent makes a throw-away CA and one certificate per
party, picks free loopback ports and starts one :mod:`veil.jobs.worker` per
party. Across machines each site runs only its own party (``RunOptions.parties``)
with the federation's certificates and everyone's addresses. Either way the
parent follows its workers' events (local pipes, not the protocol wire).

Before any party starts, the parent checks the job and each local party's own data
(:mod:`veil.jobs.validate`); a bad file is refused with a ConfigError, and in a
federation the peers are told (an abort naming the data check) so they stop too.
Workers write into the run's staging folder inside ``DIR`` (:mod:`veil.jobs.staging`),
which also holds the run's throw-away keys and is removed on every exit path; only
when every local party finished every step are the staged folders renamed to
``DIR/<party>/``. A failed, interrupted (Ctrl-C, SIGTERM, SIGHUP) or killed run
publishes nothing and leaves an earlier successful run in ``DIR`` as it was; its
report names the party, the step and the cause.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from veil.errors import ConfigError
from veil.jobs.display import Display
from veil.jobs.files import check_out_dir
from veil.jobs.handshake import WorkerConfig
from veil.jobs.report import StepRecord, build_report
from veil.jobs.spec import JobSpec, one_of
from veil.jobs.staging import Staging, remove_stale, write_failure_report
from veil.jobs.supervise import Follower, Worker, root_cause, start_worker, stop_workers, tail
from veil.jobs.validate import check_data
from veil.net.certs import TlsFiles, throwaway_federation
from veil.net.grpc_transport import GrpcConfig, free_port, send_abort

NOTIFY_S = 10.0  # how long a party refused by its data check tries to tell its peers
SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


@dataclass(frozen=True)
class RunOptions:
    """How to run a job.

    ``timeout``: seconds a party waits for a peer (connect and each message).
    ``parties``: the parties to run here (default: all, on this machine).
    ``addresses``: ``host:port`` of every party (default: free loopback ports).
    ``listen``: where the local party's server binds (default: its address).
    ``tls``: certificates of the local parties (default: a throw-away CA; a
    federation's certificates from ``veil ca`` when running across machines).
    ``job``: a node's job id; the traffic then goes through the nodes' peer endpoints,
    multiplexed by it, and ``listen`` is a ``unix:`` socket only the node reaches.
    ``engine``: where the local party runs its kernels (``ray://HOST:PORT``), over the
    ``engine:`` of its party in the job file (:mod:`veil.jobs.engines`).
    """

    timeout: float = 300.0
    parties: tuple[str, ...] | None = None
    addresses: Mapping[str, str] | None = None
    listen: str | None = None
    tls: Mapping[str, TlsFiles] | None = None
    job: str | None = None
    engine: str | None = None  # --engine: the local party's engine, over its job-file entry

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
    """What :func:`run_job` returns: ``report`` is what it wrote to ``report_path``.

    ``signal``: the signal that interrupted the run (SIGINT for Ctrl-C), else None.
    """

    ok: bool
    error: str | None
    report: dict[str, Any]
    report_path: Path
    signal: int | None = None


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT raises a plain KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _stop_signals() -> Iterator[list[bool]]:
    """SIGTERM and SIGHUP stop the run as Ctrl-C does; set ``[True]`` to hold them off
    (cleaning up), after which they are only recorded."""
    shield = [False]
    if threading.current_thread() is not threading.main_thread():
        yield shield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if not shield[0]:
            raise Interrupted(signum)

    sigs = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    old = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        signal.signal(s, handler)
    try:
        yield shield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_job(
    spec: JobSpec,
    out_dir: str | Path,
    options: RunOptions | None = None,
    display: Display | None = None,
) -> RunResult:
    """Run ``spec`` with one worker process per local party; write ``out_dir/report.json``
    (``failed-report.json`` when the run failed and ``out_dir`` holds an earlier success).

    Raises :class:`ConfigError` for bad input found before any party starts (nothing
    is written); a failure while running is returned (``ok=False``), never raised.
    """
    options = options or RunOptions()
    display = display or Display()
    local = options.local(spec)
    if options.timeout <= 0:
        raise ConfigError("--timeout", "must be positive", "e.g. --timeout 300")
    out = Path(out_dir)
    check_out_dir(out, local)
    addresses = _addresses(spec, local, options)
    _check_tls(spec, local, options)
    remote = [p for p in spec.party_names if p not in local]
    try:
        warnings = check_data(spec, local)
    except ConfigError as e:
        for p in local if remote else ():  # the peers stop too, told why
            send_abort(
                _grpc(spec, p, addresses, options),
                str(e),
                step="data check",
                patience=min(options.timeout, NOTIFY_S),
            )
        raise
    out.mkdir(parents=True, exist_ok=True)
    notes = remove_stale(out)
    steps = [StepRecord(s.name, seed=_seed(s)) for s in spec.steps]
    t0 = time.perf_counter()
    error: str | None = None
    own = True
    interrupted: int | None = None
    workers: dict[str, Worker] = {}
    follower: Follower | None = None
    with _stop_signals() as shield:
        staging = Staging(out)
        try:
            display.start(spec.name, [s.name for s in spec.steps], local)
            for text in notes:
                display.note(text)
            for text in warnings:
                display.note(f"warning: {text}")
            tls = options.tls or throwaway_federation(spec.party_names, staging.run / "tls")
            for name in local:
                cfg = _worker_config(
                    spec, name, addresses=addresses, tls=tls[name], staging=staging, options=options
                )
                workers[name] = start_worker(cfg, staging.run)
            follower = Follower(workers, steps, display)
            follower.run()
            error, own = root_cause(workers, steps)
        except KeyboardInterrupt as e:
            shield[0] = True
            interrupted = getattr(e, "signum", signal.SIGINT)
            how = f"interrupted ({SIGNAL_NAMES.get(interrupted, f'signal {interrupted}')})"
            stop_workers(workers.values(), how, tell_peers=bool(remote))
            error = f"{how}: " + ("the peers were told" if remote else "all parties were stopped")
        except Exception as e:  # a fault of veil run itself: still stop, clean up and report
            error = f"veil run failed: {type(e).__name__}: {e}"
        finally:
            shield[0] = True
            stop_workers(workers.values(), error or "stopped", tell_peers=bool(remote))
            display.stop()
            if remote and error is not None and own:
                _tell_peers(spec, local, workers, steps=steps, addresses=addresses, options=options)
            report = build_report(spec.name, local, steps, error, time.perf_counter() - t0)
            report["warnings"] = [*warnings, *(follower.warnings if follower else [])]
            logs = {w.name: tail(w.log) for w in workers.values() if w.failure}
            if logs:
                report["logs"] = logs  # the failed workers' last log lines (their stderr)
            if error is None:
                path = staging.publish(local, report)
            else:
                path = write_failure_report(out, report)
            staging.close()
    return RunResult(error is None, error, report, path, interrupted)


def _seed(step: Any) -> dict[str, Any] | None:
    from veil.jobs.seeds import DERIVED

    if not step.derived_seed:
        return None
    return {"value": step.params["seed"], "source": DERIVED}


def _tell_peers(
    spec: JobSpec,
    local: tuple[str, ...],
    workers: dict[str, Worker],
    *,
    steps: list[StepRecord],
    addresses: tuple[str, ...],
    options: RunOptions,
) -> None:
    """Tell the remote peers about local parties that could not say it themselves
    (crashed, killed, never started); best effort, about a second."""
    for name in local:
        w = workers.get(name)
        if w is not None and not w.killed and (w.failure is None or w.failure[0] != "crash"):
            continue  # it told its peers itself
        reason = w.failure[1] if w is not None and w.failure else "its veil run stopped"
        step = f"{w.step} '{steps[w.step].name}'" if w is not None and w.step >= 0 else "start"
        send_abort(_grpc(spec, name, addresses, options), reason, step=step, patience=1.0)


def _grpc(spec: JobSpec, party: str, addresses: tuple[str, ...], options: RunOptions) -> GrpcConfig:
    names = tuple(sorted(spec.party_names))
    assert options.tls is not None
    return GrpcConfig(
        rank=names.index(party),
        names=names,
        addresses=tuple(addresses[spec.party_names.index(n)] for n in names),
        tls=options.tls[party],
        listen=options.listen if options.job else None,
        job=options.job,
    )


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


def _check_tls(spec: JobSpec, local: tuple[str, ...], options: RunOptions) -> None:
    if options.tls is None:
        if len(local) < len(spec.party_names):
            raise ConfigError(
                "--cert",
                "running one party needs the federation's certificates",
                "give --ca, --cert and --key (made with veil ca)",
            )
        return
    missing = [p for p in local if p not in options.tls]
    if missing:
        raise ConfigError("tls", f"no certificate for {', '.join(missing)}", "give one per party")
    for p in local:
        for what in ("ca_cert", "cert", "key"):
            f = Path(getattr(options.tls[p], what))
            if not f.is_file():
                raise ConfigError(f"tls.{p}.{what}", f"no such file '{f}'", "check the path")


def _worker_config(
    spec: JobSpec,
    name: str,
    *,
    addresses: tuple[str, ...],
    tls: TlsFiles,
    staging: Staging,
    options: RunOptions,
) -> WorkerConfig:
    # Wire ranks follow the sorted party names, so two sites whose job files list the
    # parties in different orders still agree on them.
    names = tuple(sorted(spec.party_names))
    return WorkerConfig(
        job=str(spec.path),
        party=name,
        out_dir=str(staging.parties / name),
        names=names,
        addresses=tuple(addresses[spec.party_names.index(n)] for n in names),
        ca_cert=str(tls.ca_cert),
        cert=str(tls.cert),
        key=str(tls.key),
        timeout=options.timeout,
        listen=options.listen,
        staging=str(staging.root),
        tell_peers=options.parties is not None and len(options.parties) < len(spec.party_names),
        route=options.job,
        engine=options.engine or spec.party(name).engine,
    )
