"""Output folders: which party folders of ``--out`` ``veil run`` may replace.

Outputs are written atomically (:mod:`veil.fileio`) into the run's staging folder
and published by renaming (:mod:`veil.jobs.staging`).
"""

from __future__ import annotations

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
