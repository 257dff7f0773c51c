"""What a step function receives: this party's data, session, folder and state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import pandas as pd

from veil.jobs.sources import Table
from veil.net.session import Session

if TYPE_CHECKING:
    from veil.ml import secureboost as sbt
    from veil.ml.binning import Bins
    from veil.ml.fed_binning import LabelHolderBinning
    from veil.ml.horizontal import FedResult
    from veil.ml.lr import PartyModel
    from veil.ml.scorecard import LinearPart
    from veil.ml.split import Split

TrainedModel: TypeAlias = "PartyModel | LinearPart | sbt.LabelHolderModel | sbt.PartnerModel"
"""This party's part of a model a training step of the job left."""


@dataclass
class StepState:
    """What steps hand to later steps (this party's own data), one typed field each.

    - ``aligned``: a ``psi`` step has aligned the rows to the intersection.
    - ``split``: the train/test mask of the aligned rows (``split``, or a training step).
    - ``features``: this party's feature columns still in use (``binning``, ``select``).
    - ``bins``: ``{column: Bins}`` of this party's own features (``binning``).
    - ``binning``: label holder only, every party's bin statistics (``binning``).
    - ``raw_frame``: this party's table before a WOE transform replaced its columns.
    - ``model``: this party's part of the trained model (``hetero_lr``, ``secureboost``).
    - ``predictions``: label holder only, ``id, score, label, set`` rows for ``evaluate``.
    - ``fedavg``: the global model of ``fedavg`` and this bank's held-out rows.
    """

    aligned: bool = False
    split: Split | None = None
    features: list[str] | None = None
    bins: dict[str, Bins] | None = None
    binning: LabelHolderBinning | None = None
    raw_frame: pd.DataFrame | None = None
    model: TrainedModel | None = None
    predictions: pd.DataFrame | None = None
    fedavg: FedResult | None = None


@dataclass
class StepContext:
    """One party's view of one step of a job.

    ``frame`` is this party's table; a step that reorders or filters rows (PSI
    aligns them to the intersection) replaces it, and later steps see the new
    one. ``state`` (:class:`StepState`) carries everything else between steps.
    ``table``: this party's Parquet folder or SQL table while it is not read yet (then
    ``frame`` has no rows): a first ``psi`` step streams its ids and reads only the
    rows of the intersection; before any other step the worker reads it whole.
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
    state: StepState = field(default_factory=StepState)
    report_progress: Callable[[float, str], None] | None = None
    table: Table | None = None

    @property
    def parties(self) -> list[str]:
        """Every party of the job, in rank order."""
        return self.session.parties

    def progress(self, fraction: float, msg: str = "") -> None:
        """Report this party's progress in the current step (0..1)."""
        if self.report_progress is not None:
            self.report_progress(min(max(fraction, 0.0), 1.0), msg)
