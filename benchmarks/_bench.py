"""Shared plumbing of the benchmark harnesses: where things are, and who runs first.

Paths. The shared folder (data sets, peer harnesses, the interop peer) sits beside the
repository, ``../shared`` from its root, as in a fresh clone next to it; ``VEIL_SHARED``
overrides it. The peer frameworks' venvs default to what the commands of
``shared/peers/README.md`` and ``shared/interop/README.md`` create; every harness takes
them as flags. Nothing is read from or written to a fixed temporary path.

Order. A side-by-side harness runs its systems in rounds; in every other round the order
is reversed, so warm caches, a cooling CPU or a neighbour's load favour neither side.
``--first`` picks who starts round 0 (with one round it is the only order).

This module uses only the standard library: FATE's launcher imports it from FATE's venv.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]

# What shared/peers/README.md's setup commands create (cp -r ../shared/peers /tmp/peers,
# ./setup.sh fate /tmp/fate-venv, ./setup.sh secretflow /tmp/sf-venv, ...), and
# shared/interop/README.md's ./setup.sh /tmp/sfpeer.
PEERS_DIR = "/tmp/peers"
FATE_VENV = "/tmp/fate-venv"
SF_VENV = "/tmp/sf-venv"
FLOWER_VENV = "/tmp/flwr-venv"
SF_INTEROP_VENV = "/tmp/sfpeer"


def shared_dir() -> Path:
    """``$VEIL_SHARED``, else ``../shared`` next to the repository root."""
    env = os.environ.get("VEIL_SHARED")
    return Path(env).resolve() if env else REPO.parent / "shared"


def default_data_dir() -> Path:
    return shared_dir() / "data"


def need(path: Path, what: str, how: str) -> Path:
    """``path`` if it exists, else exit saying what is missing and how to get it."""
    if not path.exists():
        raise SystemExit(f"{what} not found at {path}: {how}")
    return path


def data_dir(arg: str | Path | None) -> Path:
    """The shared data folder (``--data``, else ``shared/data``), checked to exist."""
    p = Path(arg) if arg else default_data_dir()
    return need(p, "shared data", "pass --data DIR or set VEIL_SHARED to the shared folder")


def peer_python(venv: str | Path, what: str, readme: str = "shared/peers/README.md") -> Path:
    """``VENV/bin/python``, checked to exist."""
    return need(Path(venv) / "bin" / "python", f"{what}'s venv", f"build it as {readme} says")


def add_order_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--first",
        choices=["veil", "peer"],
        default="veil",
        help="which side runs first in round 0; later rounds alternate (default: veil)",
    )


def in_order(round_no: int, first: str, veil: Sequence[T], peers: Sequence[T]) -> list[T]:
    """Round ``round_no``'s run order: Veil's runs and the peers' runs, alternating."""
    veil_first = (round_no % 2 == 0) == (first == "veil")
    return [*veil, *peers] if veil_first else [*peers, *veil]
