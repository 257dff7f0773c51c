"""Reproducible train/test split of PSI-aligned rows, decided by the label holder.

Rows are already aligned (same order on every party). The label holder draws
the split from ``seed`` (stratified by label if asked, so both sets keep the
event rate) and sends every partner a test-row mask; every party then keeps the
same rows.

Flow:  1. label holder -> each partner   {n_rows, test mask (bool per row)}
       partner checks that its row count matches.

What each party learns: partners learn which rows are in the test set and
nothing about the labels (a stratified draw is uniform within each class, so
the mask does not tell which rows are events). The seed is not sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError, ProtocolError
from veil.ml.labels import check_labels
from veil.net.session import Session

LABEL_HOLDER = "label_holder"


class Tag(StrEnum):
    """Every message of the split."""

    MASK = "mask"


@dataclass(frozen=True)
class SplitOptions:
    """``test_size`` in (0, 1); ``seed`` makes the split reproducible."""

    test_size: float = 0.3
    seed: int = 42
    stratify: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < float(self.test_size) < 1.0:
            raise ConfigError(
                "split.test_size", f"must be in (0, 1), got {self.test_size}", "use e.g. 0.3"
            )
        if int(self.seed) < 0:
            raise ConfigError("split.seed", f"must be >= 0, got {self.seed}", "use e.g. 42")


@dataclass(frozen=True)
class Split:
    """Which aligned rows are in the test set; the rest are training rows."""

    test_mask: npt.NDArray[np.bool_]

    @property
    def train_idx(self) -> npt.NDArray[np.int64]:
        return np.flatnonzero(~self.test_mask).astype(np.int64)

    @property
    def test_idx(self) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self.test_mask).astype(np.int64)

    def set_names(self) -> list[str]:
        """``"train"`` / ``"test"`` per row, for prediction files."""
        return ["test" if t else "train" for t in self.test_mask.tolist()]


def draw_split(y: npt.ArrayLike, opts: SplitOptions) -> Split:
    """The label holder's split of ``len(y)`` rows (plaintext, no messages)."""
    labels = check_labels(y)
    n = len(labels)
    rng = np.random.default_rng(int(opts.seed))
    mask = np.zeros(n, dtype=bool)
    pools = [np.flatnonzero(labels == c) for c in (0, 1)] if opts.stratify else [np.arange(n)]
    for pool in pools:
        k = round(len(pool) * float(opts.test_size))
        mask[rng.permutation(pool)[:k]] = True
    if mask.all() or not mask.any():
        raise ConfigError(
            "split.test_size",
            f"leaves an empty train or test set with {n} rows",
            "use more rows or a test_size nearer 0.3",
        )
    return Split(mask)


def run_label_holder(
    s: Session,
    y: npt.ArrayLike,
    opts: SplitOptions = SplitOptions(),
    *,
    partners: Sequence[str] | None = None,
) -> Split:
    """Draw the split and send the test mask to every partner."""
    split = draw_split(y, opts)
    for p in partners if partners is not None else s.peers():
        s.send(p, Tag.MASK, {"n_rows": len(split.test_mask), "test_mask": split.test_mask})
    return split


def run_partner(s: Session, n_rows: int) -> Split:
    """Receive the label holder's split of this party's ``n_rows`` aligned rows."""
    if n_rows <= 0:
        raise ConfigError("rows", "this party has zero rows", "check the PSI output")
    msg: Any = s.recv(s.party_of(LABEL_HOLDER), Tag.MASK)
    try:
        mask = np.asarray(msg["test_mask"], dtype=bool)
        theirs = int(msg["n_rows"])
    except (KeyError, TypeError, ValueError):
        raise ProtocolError("malformed split mask") from None
    if theirs != n_rows or mask.shape != (n_rows,):
        raise ConfigError(
            "rows",
            f"label holder has {theirs} rows, this party {n_rows}",
            "run PSI first so every party holds the same aligned rows",
        )
    return Split(mask)
