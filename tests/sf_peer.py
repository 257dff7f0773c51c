"""Runs SecretFlow's interconnection PSI peer (``shared/interop``) as a subprocess.

The peer needs its own venv (spu 0.9.1b0): set ``VEIL_SF_PEER`` to that venv, built by
``shared/interop/setup.sh`` (``scripts/test`` builds and caches it). Tests using
:func:`sf_peer_venv` skip when it is absent, unless ``VEIL_REQUIRE_INTEROP=1`` (set by
``scripts/test`` under CI), where a missing peer fails the test instead of hiding it.
"""

from __future__ import annotations

import csv
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.require import unavailable

ENV = "VEIL_SF_PEER"
_HERE = Path(__file__).resolve()
SCRIPT_CANDIDATES = [
    Path(os.environ.get("VEIL_SF_PEER_SCRIPT", "/nonexistent")),
    _HERE.parents[2] / "shared" / "interop" / "secretflow_psi_peer.py",
    _HERE.parents[3] / "shared" / "interop" / "secretflow_psi_peer.py",
]


def _skip(reason: str) -> None:
    unavailable("the interop peer", "VEIL_REQUIRE_INTEROP", reason)


def sf_peer_venv() -> tuple[Path, Path]:
    """(python of the peer venv, peer script), or skip the test saying how to get them."""
    venv = os.environ.get(ENV)
    if not venv:
        _skip(
            f"{ENV} is not set: build the peer with shared/interop/setup.sh DIR, export {ENV}=DIR"
        )
    py = Path(venv) / "bin" / "python"
    if not py.exists():
        _skip(f"{ENV}={venv} has no bin/python: run shared/interop/setup.sh {venv}")
    script = next((p for p in SCRIPT_CANDIDATES if p.exists()), None)
    if script is None:
        _skip("secretflow_psi_peer.py not found (set VEIL_SF_PEER_SCRIPT)")
    return py, script


def write_ids(path: Path, ids: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "row"])
        for i, x in enumerate(ids):
            w.writerow([x, i])


def read_ids(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        return [r["id"] for r in csv.DictReader(f)]


@dataclass
class SfRun:
    proc: subprocess.Popen[str]
    out: Path
    log: Path

    def wait(self, timeout: float = 120) -> tuple[int, str]:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = -9
        return rc, self.log.read_text(errors="replace")


def start_sf(tmp: Path, rank: int, me: str, peer: str, ids: Sequence[str], *extra: str) -> SfRun:
    py, script = sf_peer_venv()
    inp, out, log = tmp / f"sf{rank}_in.csv", tmp / f"sf{rank}_out.csv", tmp / f"sf{rank}.log"
    write_ids(inp, ids)
    args = [str(py), str(script), "--rank", str(rank), "--self", me, "--peer", peer]
    args += ["--in", str(inp), "--out", str(out), "--fin-timeout", "10", *extra]
    with log.open("w") as f:
        proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, text=True)
    return SfRun(proc, out, log)
