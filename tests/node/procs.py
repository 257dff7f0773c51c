"""Nodes as separate OS processes (``veil node start``) and the CLI against them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from veil.node.config import load_config


def veil(*args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the ``veil`` CLI in a fresh process."""
    r = subprocess.run(
        [sys.executable, "-m", "veil.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )
    if check and r.returncode != 0:
        raise AssertionError(f"veil {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def status(node: Path, job_id: str) -> dict[str, Any]:
    """``veil job status --json``."""
    out: dict[str, Any] = json.loads(
        veil("job", "status", "--node", str(node), job_id, "--json").stdout
    )
    return out


def wait_state(node: Path, job_id: str, states: set[str], timeout: float) -> dict[str, Any]:
    """Poll the job's state through the CLI until it is in ``states``."""
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = status(node, job_id)
        if st["state"] in states:
            return st
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} on {node.name} still {st.get('state')}: {st}")


class NodeProc:
    """A ``veil node start DIR`` process."""

    def __init__(self, node_dir: Path) -> None:
        self.dir = node_dir
        self.log = (node_dir / "node.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "veil.cli", "node", "start", str(node_dir)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        import httpx

        api = load_config(self.dir).api
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.dir.name} exited: {self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{api}/v1/health", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"node {self.dir.name} API not up: {self.tail()}")

    def tail(self) -> str:
        return (self.dir / "node.log").read_text(errors="replace")[-3000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"node {self.dir.name} did not stop on signal {sig}") from None
        finally:
            self.log.close()


@contextmanager
def node_procs(dirs: dict[str, Path]) -> Iterator[dict[str, NodeProc]]:
    """Start a node process per folder; stop them all afterwards (SIGKILL if stuck)."""
    procs: dict[str, NodeProc] = {}
    try:
        for n, d in dirs.items():
            procs[n] = NodeProc(d)
        yield procs
    finally:
        for p in procs.values():
            with contextlib.suppress(AssertionError, OSError):
                p.stop()
