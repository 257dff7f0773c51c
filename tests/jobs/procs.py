"""``veil run`` as real processes, as an operator starts it: all parties on one machine,
or one ``veil run --party`` per site on loopback (two machines' worth)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from veil.net import certs, grpc_transport

ROOT = Path(__file__).resolve().parents[2]


def veil_env(tmp: Path | None = None) -> dict[str, str]:
    """The test steps importable by the workers; ``tmp`` as the system temporary folder."""
    env = dict(os.environ, VEIL_STEP_MODULES="tests.jobs.fake_steps")
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)
    if tmp is not None:
        tmp.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmp)
    return env


@dataclass
class Run:
    """One ``veil run`` process; its stderr goes to a file (read with :meth:`err`)."""

    proc: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    def err(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 90) -> int:
        return self.proc.wait(timeout)

    def workers(self) -> list[psutil.Process]:
        kids = psutil.Process(self.proc.pid).children()
        return [p for p in kids if "veil.jobs.worker" in p.cmdline()]


def start(args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Run:
    """``veil run ARGS`` in its own session (signals reach only what a test sends)."""
    cmd = [sys.executable, "-m", "veil.cli", "run", *args]
    with log.open("wb") as f:
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=env or veil_env(), start_new_session=True
        )
    return Run(proc, log)


class Sites:
    """A federation of two sites, ``bank`` and ``partner``, on loopback ports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fed = certs.throwaway_federation(["bank", "partner"], root / "fed")
        self.ports = {p: grpc_transport.free_port() for p in ("bank", "partner")}

    def args(
        self, job: Path, party: str, *, timeout: float = 30, tls: certs.TlsFiles | None = None
    ) -> list[str]:
        t = tls or self.fed[party]
        args = [
            str(job),
            "--out",
            str(self.out(party)),
            "--party",
            party,
            "--timeout",
            str(timeout),
        ]
        args += ["--ca", str(t.ca_cert), "--cert", str(t.cert), "--key", str(t.key)]
        return args + [f"--address={p}=127.0.0.1:{port}" for p, port in self.ports.items()]

    def out(self, party: str) -> Path:
        return self.root / f"site-{party}"

    def start(self, job: Path, party: str, **kw: object) -> Run:
        return start(self.args(job, party, **kw), self.root / f"{party}.log")  # type: ignore[arg-type]


def wait_for(cond: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def staged(out: Path, party: str, name: str = "partial.txt") -> bool:
    """Whether ``party``'s staged output ``name`` exists (its step has run)."""
    return bool(list(out.glob(f".veil-staging-*/parties/{party}/{name}")))


def leftovers(*folders: Path) -> list[str]:
    """Every staging folder and key file under ``folders``."""
    found = []
    for d in folders:
        if d.exists():
            found += [str(p) for p in d.rglob("*") if ".veil-staging-" in p.name]
            found += [str(p) for p in d.rglob("*.key")]
    return found
