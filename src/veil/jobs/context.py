"""What a step function receives: this party's data, session, folder and state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from veil.net.session import Session


@dataclass
class StepContext:
    """One party's view of one step of a job.

    ``frame`` is this party's table; a step that reorders or filters rows (PSI
    aligns them to the intersection) replaces it, and later steps see the new
    one. ``state`` carries anything else between steps (models, splits, bins).
    ``out_dir`` is this party's output folder; write files there atomically
    (:func:`veil.fileio.write_csv`), the runner publishes them only if the
    whole job succeeds.
    """

    party: str
    session: Session
    frame: pd.DataFrame
    id_col: str
    label_col: str | None
    out_dir: Path
    state: dict[str, Any] = field(default_factory=dict)
    report_progress: Callable[[float, str], None] | None = None

    @property
    def parties(self) -> list[str]:
        """Every party of the job, in rank order."""
        return self.session.parties

    def progress(self, fraction: float, msg: str = "") -> None:
        """Report this party's progress in the current step (0..1)."""
        if self.report_progress is not None:
            self.report_progress(min(max(fraction, 0.0), 1.0), msg)
