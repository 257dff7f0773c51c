"""Atomic file output shared by every layer that writes files (never ``veil.crypto``).

A reader, or a crash, never sees half a file: data goes to a temporary file beside
the target, is flushed to disk, then renamed over it. Outputs are 0644; private keys
pass ``mode=0o600`` so the secret is never readable by others, even briefly.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd


def write_atomic_with(path: Path, write: Callable[[IO[bytes]], None], *, mode: int = 0o644) -> Path:
    """Call ``write(f)`` on a temp file beside ``path``, fsync it, rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_atomic(path: Path, data: bytes | str, *, mode: int = 0o644) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically."""
    raw = data.encode("utf-8") if isinstance(data, str) else data

    def write(f: IO[bytes]) -> None:
        f.write(raw)

    return write_atomic_with(path, write, mode=mode)


def write_csv(df: pd.DataFrame, path: Path, **to_csv: Any) -> Path:
    """Write ``df`` (without its index) as CSV, atomically."""
    return write_atomic_with(path, lambda f: df.to_csv(f, index=False, **to_csv))


def write_json(obj: object, path: Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return write_atomic(path, json.dumps(obj, indent=2) + "\n")
