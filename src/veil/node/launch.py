"""Running this node's party of an approved job in its own process.

:class:`ProcessLauncher` writes the ``veil run`` job file for this node's worker
(:func:`veil.node.jobfile.materialize`), starts :mod:`veil.node.jobproc` and
follows its JSON lines: step states and progress go to the store, the result ends
the job. The job's protocol traffic goes through the nodes' peer endpoints with the
node's certificate, multiplexed by job id (:mod:`veil.node.relay`): the worker
pushes to each peer's node and listens on a private Unix socket that only this
node's relay reaches, so no job opens a port of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from veil.errors import VeilError
from veil.node.jobfile import materialize, parse_node_job
from veil.node.model import Artifact, Event, Job, JobState, StepState
from veil.node.relay import Relay

if TYPE_CHECKING:
    from veil.node.service import NodeService

log = logging.getLogger(__name__)
JOB_TIMEOUT = 600.0  # a worker's wait for one message; dead peers are caught by heartbeats
STARTUP_S = 3.0  # the longest the next job waits for the last one to begin its first step


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ProcessLauncher:
    """One :mod:`veil.node.jobproc` process per running job.

    Jobs are started one after another by one thread: the next one when the last has
    begun its first step (or after ``STARTUP_S``). A job process spends its first
    seconds importing and loading data; twenty of those at once would leave the node's
    API and peer endpoint waiting for a CPU (measured: ``benchmarks/node.py load``).
    """

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._begun: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[NodeService, Job] | None] = queue.Queue()
        self._starter = threading.Thread(target=self._run, daemon=True, name="job-starter")
        self._starter.start()

    def start(self, service: NodeService, job: Job) -> None:
        self._queue.put((service, job))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            service, job = item
            begun = threading.Event()
            with self._lock:
                self._begun[job.id] = begun
            try:
                self._start(service, job)
            except VeilError as e:
                self.relay.close(job.id)
                service.fail(job.id, f"party '{service.name}' cannot start: {e}")
            except Exception:  # the starter never dies; the job fails
                log.exception("node %s: starting job %s", service.name, job.id)
                self.relay.close(job.id)
                service.fail(job.id, f"party '{service.name}' cannot start its job process")
            with self._lock:
                started = job.id in self._procs
            if started:
                begun.wait(STARTUP_S)
            with self._lock:
                self._begun.pop(job.id, None)

    def _start(self, service: NodeService, job: Job) -> None:
        cfg = service.cfg
        nj = parse_node_job(job.text)
        ds = service.store.dataset(nj.datasets[cfg.name])
        if ds is None:
            raise VeilError(f"dataset '{nj.datasets[cfg.name]}' is gone")
        infos = service.infos(job.id)
        work = cfg.dir / "jobs" / job.id
        materialize(nj, cfg.name, ds, infos, work / "job.yaml")
        addresses = {p: cfg.peer_address(p) for p in nj.parties}
        run_cfg = {
            "job": str(work / "job.yaml"),
            "route": job.id,
            "party": cfg.name,
            "out": str(work / "out"),
            "addresses": addresses,
            "listen": self.relay.open(job.id, nj.parties),
            "ca": str(cfg.tls.ca_cert),
            "cert": str(cfg.tls.cert),
            "key": str(cfg.tls.key),
            "timeout": JOB_TIMEOUT,
            "engine": cfg.engine,  # this node's own choice (node.toml), never a partner's
        }
        (work / "run.json").write_text(json.dumps(run_cfg), encoding="utf-8")
        with self._lock:
            current = service.job(job.id)
            if current.state != JobState.APPROVED:
                self.relay.close(job.id)
                return  # cancelled or failed meanwhile
            with (work / "job.log").open("wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "veil.node.jobproc", "--config", str(work / "run.json")],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=dict(os.environ, PYTHONUNBUFFERED="1"),
                    start_new_session=True,
                )
            self._procs[job.id] = proc
            with contextlib.suppress(OSError):  # its worker inherits it
                nice = min(os.getpriority(os.PRIO_PROCESS, 0) + cfg.job_nice, 19)
                os.setpriority(os.PRIO_PROCESS, proc.pid, nice)
        service.set_state(
            current,
            JobState.RUNNING,
            "job.running",
            service.me,
            sha256=current.sha256,
            parties=list(current.parties),
        )
        threading.Thread(
            target=self._follow, args=(service, job.id, proc), daemon=True, name=f"job-{job.id}"
        ).start()

    def _follow(self, service: NodeService, job_id: str, proc: subprocess.Popen[bytes]) -> None:
        try:
            self._follow_events(service, job_id, proc)
        except Exception as e:  # never leave a job running with nobody following it
            log.exception("node %s: following job %s", service.name, job_id)
            self.relay.close(job_id)
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                service.finished(job_id, False, f"party '{service.name}': {type(e).__name__}: {e}")

    def _follow_events(
        self, service: NodeService, job_id: str, proc: subprocess.Popen[bytes]
    ) -> None:
        assert proc.stdout is not None
        steps = {s.index: s for s in service.store.steps(job_id)}
        result: dict[str, Any] | None = None
        for line in _lines(proc.stdout):
            self._began(job_id)
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "result":
                result = ev
            elif ev.get("event") == "step" and int(ev.get("step", -1)) in steps:
                steps[int(ev["step"])] = self._step(service, steps[int(ev["step"])], ev)
        rc = proc.wait()
        self._began(job_id)
        self.relay.close(job_id)
        with self._lock:
            self._procs.pop(job_id, None)
        if result is None:
            service.finished(job_id, False, f"party '{service.name}': job process ended ({rc})")
            return
        report = result.get("report") or {}
        for i, row in enumerate(report.get("steps", [])):
            if i in steps:
                sent = sum(int(t.get("bytes_sent", 0)) for t in row.get("traffic", {}).values())
                s = replace(
                    steps[i], seconds=float(row.get("seconds") or steps[i].seconds), bytes=sent
                )
                service.store.progress(s)
        _audit_traffic(service, job_id, report)
        if result.get("ok"):
            self._artifacts(service, job_id)
        service.finished(job_id, bool(result.get("ok")), result.get("error"))

    @staticmethod
    def _step(service: NodeService, s: StepState, ev: dict[str, Any]) -> StepState:
        status = ev.get("status")
        if "fraction" in ev:
            s = replace(s, progress=float(ev["fraction"]))
        if "seconds" in ev:
            s = replace(s, seconds=float(ev["seconds"]))
        if status is not None and status != s.state:
            s = replace(s, state=str(status), progress=1.0 if status == "ok" else s.progress)
            detail = {"step": s.index, "name": s.name, "state": s.state}
            with service.store.change(Event("step." + s.state, s.job_id, service.me, detail)) as tx:
                tx.put_step(s)
        else:
            service.store.progress(s)
        return s

    @staticmethod
    def _artifacts(service: NodeService, job_id: str) -> None:
        out = service.cfg.dir / "jobs" / job_id / "out"
        files = [f for f in sorted(out.rglob("*")) if f.is_file() and f.name != ".veil-output"]
        arts = [
            Artifact(job_id, str(f.relative_to(out)), str(f), _sha256(f), f.stat().st_size)
            for f in files
        ]
        listed = [{"name": a.name, "sha256": a.sha256} for a in arts]
        ev = Event("job.outputs", job_id, service.me, {"files": listed})
        with service.store.change(ev) as tx:
            for a in arts:
                tx.put_artifact(a)

    def stop(self, job_id: str) -> None:
        self.relay.close(job_id)  # the job is over here: its peers' pushes are refused now
        with self._lock:
            proc = self._procs.get(job_id)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 8.0
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _began(self, job_id: str) -> None:
        with self._lock:
            ev = self._begun.get(job_id)
        if ev is not None:
            ev.set()

    def close(self) -> None:
        """Stop starting jobs and every job process (the node is stopping)."""
        self._queue.put(None)
        with self._lock:
            begun = list(self._begun.values())
        for ev in begun:
            ev.set()
        self._starter.join(10.0)
        with self._lock:
            ids = list(self._procs)
        for j in ids:
            self.stop(j)


def _audit_traffic(service: NodeService, job_id: str, report: dict[str, Any]) -> None:
    """The audit trail records the bytes exchanged with each peer per step."""
    from veil.node.auditmap import record_traffic

    record_traffic(service, job_id, report)


def _lines(stream: IO[bytes]) -> Iterator[str]:
    for raw in stream:
        yield raw.decode("utf-8", "replace")
