"""Feature selection by information value across parties.

The label holder knows the IV of every feature (its own and, from federated
binning, each partner's, under the partner's name or an anonymous id such as
``bureau:f3``), ranks them and tells each partner which of its columns stay.

Flow:  1. label holder -> each partner   KEEP: indices of the partner's kept columns
        (schema :class:`Keep`, checked on receipt)
What each party learns: the label holder nothing new (names only if the
partner revealed them at binning); a partner learns which of its own columns
were kept (a coarse hint of their IV ranking), nothing about other parties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError
from veil.messages import Fields
from veil.ml.fed_binning import BinStats, LabelHolderBinning
from veil.net.session import Session

LABEL_HOLDER = "label_holder"


class Tag(StrEnum):
    """Every message of feature selection."""

    KEEP = "keep"


@dataclass(frozen=True)
class Keep:
    """KEEP: indices of the receiving partner's kept columns (in binning order)."""

    keep: npt.NDArray[np.int64]

    def to_wire(self) -> dict[str, object]:
        return {"keep": self.keep.astype(np.int64)}

    @classmethod
    def from_wire(cls, msg: object, n_columns: int) -> Keep:
        f = Fields(Tag.KEEP, msg)
        keep = f.int_array("keep", max_size=n_columns, lo=0, hi=n_columns - 1)
        if len(np.unique(keep)) != keep.size:
            raise f.error("keep", "holds a column twice")
        return cls(keep)


@dataclass(frozen=True)
class SelectOptions:
    """Keep features with IV >= ``min_iv``, then at most ``top_k`` by IV (all parties)."""

    min_iv: float = 0.02
    top_k: int | None = None

    def __post_init__(self) -> None:
        if self.min_iv < 0:
            raise ConfigError("select.min_iv", f"must be >= 0, got {self.min_iv}", "use e.g. 0.02")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError("select.top_k", f"must be >= 1, got {self.top_k}", "or leave unset")


@dataclass(frozen=True)
class Selection:
    """The label holder's view: kept and dropped features, each ranked by IV."""

    kept: list[BinStats]
    dropped: list[BinStats]

    def kept_of(self, party: str) -> list[str]:
        return [b.name for b in self.kept if b.party == party]


def choose(stats: Sequence[BinStats], opts: SelectOptions) -> Selection:
    """Rank by IV (ties by party, then column order) and apply the threshold / top-k."""
    ranked = sorted(stats, key=lambda b: (-b.iv, b.party, b.index))
    kept = [b for b in ranked if b.iv >= opts.min_iv][: opts.top_k]
    if not kept:
        best = ranked[0].iv if ranked else 0.0
        raise ConfigError(
            "select.min_iv",
            f"keeps no feature (best IV is {best:.4f})",
            "lower min_iv or set top_k",
        )
    ids = {id(b) for b in kept}
    return Selection(kept, [b for b in ranked if id(b) not in ids])


def run_label_holder(
    s: Session,
    binning: LabelHolderBinning,
    opts: SelectOptions = SelectOptions(),
    *,
    partners: Sequence[str] | None = None,
) -> Selection:
    """Choose features and send each partner the indices of its kept columns."""
    sel = choose(binning.stats, opts)
    for p in partners if partners is not None else s.peers():
        kept = sorted(b.index for b in sel.kept if b.party == p)
        s.send(p, Tag.KEEP, Keep(np.array(kept, dtype=np.int64)).to_wire())
    return sel


def run_partner(s: Session, names: Sequence[str]) -> list[str]:
    """This party's kept column names (``names`` in the order they were binned)."""
    msg = Keep.from_wire(s.recv(s.party_of(LABEL_HOLDER), Tag.KEEP), len(names))
    return [names[i] for i in msg.keep.tolist()]
