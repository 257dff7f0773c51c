"""Atomic output files: write to a temporary name, then rename into place.

A reader (or a crash) never sees half a file: either the old one, the new one,
or none.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temp file beside ``path``, fsync it, rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` (without its index) as CSV, atomically."""
    return write_atomic(path, lambda f: df.to_csv(f, index=False))


def write_json(obj: Any, path: Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()

    def write(f: IO[bytes]) -> None:
        f.write(data)

    return write_atomic(path, write)


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
