"""Joint SecureBoost prediction, one function per role.

Flow: each partner evaluates its own split records on its own rows and sends
the label holder one bit per (record, row): "goes left". The label holder routes
every row through the trees with those bits and its own splits.
What each party learns: the label holder, the scores and each partner split's
left/right decision per row (not the feature, threshold or values); a partner,
nothing (it sends only).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError
from veil.ml.secureboost.binning import as_features
from veil.ml.secureboost.core import route
from veil.ml.secureboost.messages import Route, Tag
from veil.ml.secureboost.model import LabelHolderModel, PartnerModel
from veil.ml.secureboost.params import Objective
from veil.ml.secureboost.protocol import LABEL_HOLDER
from veil.net.session import Session

__all__ = ["run_predict_label_holder", "run_predict_partner"]


def run_predict_label_holder(s: Session, model: LabelHolderModel, x: npt.ArrayLike) -> np.ndarray:
    """Scores for the aligned rows: probabilities (binary) or values (regression)."""
    xa = as_features(x, model.feature_names, "label_holder")
    n = xa.shape[0]
    left: dict[tuple[int, int], np.ndarray] = {
        (0, i): r.goes_left(xa) for i, r in enumerate(model.records)
    }
    for k, party in enumerate(model.parties[1:], start=1):
        # one record per split the partner owns, numbered in split order
        n_records = sum(nd.party == k for nodes in model.trees for nd in nodes)
        msg = Route.from_wire(s.recv(party, Tag.ROUTE), n_records=n_records)
        if msg.rows != n:
            raise ConfigError(
                f"partner.{party}.rows",
                f"{msg.rows} rows but the label holder has {n}",
                "align both tables on the PSI result in the same order",
            )
        for i, bits in enumerate(msg.left):
            left[(k, i)] = bits
    margin = np.full(n, model.base)
    for nodes in model.trees:
        margin += route(nodes, left, n)
    if model.params.objective == Objective.BINARY:
        return np.asarray(1.0 / (1.0 + np.exp(-margin)))
    return margin


def run_predict_partner(s: Session, model: PartnerModel, x: npt.ArrayLike) -> None:
    """Send the routing bits of this partner's splits for its aligned rows."""
    xb = as_features(x, model.feature_names, f"partner.{s.me}")
    msg = Route(xb.shape[0], [r.goes_left(xb) for r in model.records])
    s.send(s.party_of(LABEL_HOLDER), Tag.ROUTE, msg.to_wire())
