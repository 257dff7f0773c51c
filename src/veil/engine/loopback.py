"""A throw-away Ray cluster on loopback, for tests and benchmarks (not for production).

:func:`start_cluster` runs ``ray start --head --block`` and ``workers`` more
``ray start --address=HEAD --block`` on this machine (one CPU each unless told, a small
object store, temporary files in a fresh directory), each in its own process group, and
returns a :class:`RayCluster` whose ``client`` is the head's ``127.0.0.1:PORT`` for
``ray://``. :meth:`RayCluster.stop` stops exactly the process groups it started.
Ray's processes get ``env`` (default: this process's, with ``src`` of this checkout on
``PYTHONPATH`` so they import the same Veil).

``drivers``: how many drivers (parties, jobs) use the cluster at once. Ray keeps at most
``num_cpus`` idle workers per node and kills the others after about a second; a worker
serves one job, so two drivers on a one-CPU node kill and restart each other's workers
between their batches (69 worker starts in one 10^6-id KKRT run with two parties, each
import of Veil about a CPU-second). The nodes are told to keep ``drivers`` workers per
CPU (Ray's ``num_workers_soft_limit``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]  # the src folder Veil is imported from
START_TIMEOUT_S = 90.0
OBJECT_STORE_BYTES = 80 * 1024 * 1024  # Ray's minimum is 75 MiB


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_env(extra_paths: tuple[Path, ...] = ()) -> dict[str, str]:
    """This process's environment, with Veil's ``src`` (and ``extra_paths``) first on
    ``PYTHONPATH``: what Ray's processes need to import the same Veil."""
    parts = [str(SRC), *map(str, extra_paths)]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(parts), RAY_USAGE_STATS_ENABLED="0")


@dataclass
class RayNode:
    """One ``ray start --block`` process (its own process group)."""

    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, wait: float = 3.0) -> None:
        """Stop the node and every process it started (its group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        time.sleep(0.5)  # the node's children leave the group after the parent
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class RayCluster:
    """A loopback cluster: ``client`` is ``127.0.0.1:PORT`` of its client server."""

    client: str
    gcs: str
    nodes: list[RayNode]
    tmp: Path

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def node_env(env: Mapping[str, str], drivers: int, cpus: int) -> dict[str, str]:
    """``env`` for a node of ``cpus`` CPUs that ``drivers`` drivers use at once: Ray's
    idle-worker limit raised to one worker per driver per CPU (see the module docstring)."""
    if drivers < 1 or cpus < 0:
        raise ValueError(f"drivers must be >= 1 and cpus >= 0, got {drivers}, {cpus}")
    out = dict(env)
    if drivers > 1:
        out["RAY_num_workers_soft_limit"] = str(max(cpus, 1) * drivers)
    return out


def _start_node(args: list[str], log: Path, env: Mapping[str, str]) -> RayNode:
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        raise RuntimeError("no 'ray' command next to this Python")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [ray, "start", "--block", "--disable-usage-stats", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )
    return RayNode(proc, log)


def _wait_started(node: RayNode) -> None:
    """Wait until ``ray start`` says its node runs (the line it prints once ready)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = node.log.read_text(errors="replace") if node.log.exists() else ""
        if "Ray runtime started" in text:
            return
        if node.proc.poll() is not None:
            raise RuntimeError(f"ray start exited: {text[-300:].strip()}")
        time.sleep(0.2)
    raise RuntimeError(f"a Ray node did not start within {START_TIMEOUT_S:.0f} s")


def start_cluster(
    workers: int = 1,
    *,
    head_cpus: int = 1,
    worker_cpus: int = 1,
    env: Mapping[str, str] | None = None,
    drivers: int = 1,
    object_store_bytes: int = OBJECT_STORE_BYTES,
) -> RayCluster:
    """A head (``head_cpus``; 0: it runs no task) and ``workers`` more nodes
    (``worker_cpus`` each) on loopback, for ``drivers`` drivers at once, each node with
    an object store of ``object_store_bytes``."""
    env = ray_env() if env is None else env
    tmp = Path(tempfile.mkdtemp(prefix="vr-", dir="/tmp"))  # short: Ray's socket paths
    port, client = _free_port(), _free_port()
    gcs = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", f"--object-store-memory={object_store_bytes}"]
    cluster = RayCluster(f"127.0.0.1:{client}", gcs, [], tmp)
    try:
        head = [
            "--head",
            f"--port={port}",
            f"--ray-client-server-port={client}",
            f"--temp-dir={tmp}",
        ]
        head += [f"--num-cpus={head_cpus}", *common]
        head_env = node_env(env, drivers, head_cpus)
        cluster.nodes.append(_start_node(head, tmp / "head.log", head_env))
        _wait_started(cluster.nodes[0])
        for i in range(workers):
            args = [f"--address={gcs}", f"--num-cpus={worker_cpus}", *common]
            w_env = node_env(env, drivers, worker_cpus)
            cluster.nodes.append(_start_node(args, tmp / f"w{i}.log", w_env))
            _wait_started(cluster.nodes[-1])  # one at a time: two joining at once can time out
    except BaseException:
        cluster.stop()
        raise
    return cluster
