"""A Ray cluster on loopback for the engine tests: a head and one more worker node.

``ray_cluster`` starts, once per session, ``ray start --head --block`` and one
``ray start --address=HEAD --block`` (one CPU each, a small object store, no dashboard,
temporary files in a fresh directory) on this machine, and yields the head's client
address ``127.0.0.1:PORT`` (for ``ray://``). Teardown stops exactly the process groups
it started. Where Ray is missing or cannot start, tests that use it are skipped with a
one-line reason, except under ``CI=true`` (or ``VEIL_REQUIRE_RAY=1``), where they fail.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0
OBJECT_STORE_BYTES = 80 * 1024 * 1024  # Ray's minimum is 75 MiB


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_unavailable(reason: str) -> None:
    """Skip with the reason, or fail where Ray is required (CI)."""
    if os.environ.get("CI") == "true" or os.environ.get("VEIL_REQUIRE_RAY") == "1":
        pytest.fail(f"Ray required (CI=true or VEIL_REQUIRE_RAY=1) but unavailable: {reason}")
    pytest.skip(f"Ray unavailable: {reason}")


def ray_env() -> dict[str, str]:
    """The environment of Ray's processes: they import Veil from this checkout."""
    path = os.environ.get("PYTHONPATH", "")
    src = str(ROOT / "src")
    return dict(
        os.environ,
        PYTHONPATH=f"{src}{os.pathsep}{ROOT}{os.pathsep}{path}",
        RAY_USAGE_STATS_ENABLED="0",
    )


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


def _start_node(args: list[str], log: Path) -> RayNode:
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        raise RuntimeError("no 'ray' command next to this Python")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [ray, "start", "--block", "--disable-usage-stats", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ray_env(),
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


def start_cluster(workers: int = 1) -> RayCluster:
    """A head (1 CPU) and ``workers`` more nodes (1 CPU each) on loopback."""
    tmp = Path(tempfile.mkdtemp(prefix="vr-", dir="/tmp"))  # short: Ray's socket paths
    port, client = _free_port(), _free_port()
    gcs = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1"]
    common.append(f"--object-store-memory={OBJECT_STORE_BYTES}")
    cluster = RayCluster(f"127.0.0.1:{client}", gcs, [], tmp)
    try:
        head = [
            "--head",
            f"--port={port}",
            f"--ray-client-server-port={client}",
            f"--temp-dir={tmp}",
        ]
        cluster.nodes.append(_start_node(head + common, tmp / "head.log"))
        _wait_started(cluster.nodes[0])
        for i in range(workers):
            cluster.nodes.append(_start_node([f"--address={gcs}", *common], tmp / f"w{i}.log"))
        for node in cluster.nodes[1:]:
            _wait_started(node)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """The session's loopback Ray cluster (head + one worker node, 1 CPU each)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        ray_unavailable("Ray is not installed (pip install 'veil[ray]')")
    try:
        cluster = start_cluster(workers=1)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        ray_unavailable(f"cannot start a loopback cluster: {e}")
        return
    try:
        yield cluster
    finally:
        from veil.engine import ray_engine

        ray_engine.disconnect()
        cluster.stop()
