"""Running this node's party of an approved job in its own process.

:class:`ProcessLauncher` writes the ``veil run`` job file for this node's worker
(:func:`veil.node.jobfile.materialize`), starts :mod:`veil.node.jobproc` and
follows its JSON lines: step states and progress go to the store, the result ends
the job. Each job's protocol traffic uses its own mutual-TLS gRPC port (chosen when
the node votes, told to the others in the vote), with the node's certificate.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from veil.errors import VeilError
from veil.node.config import split_address
from veil.node.jobfile import materialize, parse_node_job
from veil.node.model import Artifact, Event, Job, JobState, StepState

if TYPE_CHECKING:
    from veil.node.service import NodeService

log = logging.getLogger(__name__)
JOB_TIMEOUT = 600.0  # a worker's wait for one message; dead peers are caught by heartbeats


def job_port(host: str) -> int:
    """A free TCP port on ``host`` for one job's protocol traffic."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ProcessLauncher:
    """One :mod:`veil.node.jobproc` process per running job."""

    def __init__(self) -> None:
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def start(self, service: NodeService, job: Job) -> None:
        try:
            self._start(service, job)
        except VeilError as e:
            service.fail(job.id, f"party '{service.name}' cannot start: {e}")

    def _start(self, service: NodeService, job: Job) -> None:
        cfg = service.cfg
        nj = parse_node_job(job.text)
        ds = service.store.dataset(nj.datasets[cfg.name])
        if ds is None:
            raise VeilError(f"dataset '{nj.datasets[cfg.name]}' is gone")
        infos = service.infos(job.id)
        work = cfg.dir / "jobs" / job.id
        materialize(nj, cfg.name, ds, infos, work / "job.yaml")
        addresses = {}
        for p in nj.parties:
            host, _ = split_address(cfg.peer_address(p), f"peers.{p}")
            addresses[p] = f"{host}:{int(infos[p]['port'])}"
        run_cfg = {
            "job": str(work / "job.yaml"),
            "party": cfg.name,
            "out": str(work / "out"),
            "addresses": addresses,
            "listen": f"{cfg.peer_host}:{int(infos[cfg.name]['port'])}",
            "ca": str(cfg.tls.ca_cert),
            "cert": str(cfg.tls.cert),
            "key": str(cfg.tls.key),
            "timeout": JOB_TIMEOUT,
        }
        (work / "run.json").write_text(json.dumps(run_cfg), encoding="utf-8")
        with self._lock:
            current = service.job(job.id)
            if current.state != JobState.APPROVED:
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
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "result":
                result = ev
            elif ev.get("event") == "step" and int(ev.get("step", -1)) in steps:
                steps[int(ev["step"])] = self._step(service, steps[int(ev["step"])], ev)
        rc = proc.wait()
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

    def close(self) -> None:
        """Stop every job process (the node is stopping)."""
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
