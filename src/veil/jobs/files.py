"""Atomic output files: write to a temporary name, then rename into place.

A reader (or a crash) never sees half a file: either the old one, the new one,
or none.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

MARKER = ".veil-output"  # in every party folder veil run wrote; only those are replaced


def check_out_dir(out: Path, parties: Sequence[str]) -> None:
    """Refuse an ``--out`` whose party folders were not written by ``veil run``."""
    from veil.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError("--out", f"'{out}' is a file", "give a folder for the results")
    for p in parties:
        d = out / p
        if d.exists() and not (d / MARKER).exists():
            raise ConfigError(
                "--out",
                f"'{d}' exists and was not written by veil run",
                "choose another --out folder (veil run replaces only its own outputs)",
            )


def publish(staging: Path, out: Path, parties: Sequence[str]) -> None:
    """Move each staged party folder to ``out/<party>``, replacing an older run's."""
    out.mkdir(parents=True, exist_ok=True)
    for name in parties:
        src, dst = staging / name, out / name
        src.mkdir(parents=True, exist_ok=True)
        (src / MARKER).write_text("written by veil run; replaced by the next run\n")
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(src, dst)


def remove_outputs(out: Path, parties: Sequence[str]) -> None:
    """Remove party folders a previous ``veil run`` wrote (after a failed run)."""
    for name in parties:
        d = out / name
        if (d / MARKER).exists():
            shutil.rmtree(d, ignore_errors=True)
