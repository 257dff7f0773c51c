"""Vertical (hetero) logistic regression: label holder + partners, additive HE, no arbiter.

    model, report = train_label_holder(session, data, LROptions(), valid=None)
    model, report = train_partner(session, data, LROptions(), valid=None)
    scores = predict_label_holder(session, data, model)   # partners: predict_partner
    save_model(model, "out/model.json"); load_model("out/model.json")

Role functions take ``policy: SecurityPolicy = DEFAULT_POLICY`` (key sizes, the smallest
batch, mask widths). The protocol, and exactly what each party learns, is documented in
:mod:`veil.ml.lr._train` (overview), :mod:`._residuals` and :mod:`._gram` (the two ways
of computing batch gradients), :mod:`._validation` (early stopping on an encrypted
validation loss) and :mod:`._predict` (joint scoring). Modules starting with ``_`` are
internal; this module's ``__all__`` is the API.
"""

from __future__ import annotations

from veil.crypto.he import HEScheme
from veil.ml.lr._loop import TrainReport
from veil.ml.lr._math import taylor_fit_plain
from veil.ml.lr._model import (
    MODEL_FORMAT,
    PartyData,
    PartyModel,
    load_model,
    save_model,
    write_predictions,
)
from veil.ml.lr._options import LROptions, LRProtocol, Penalty, Schedule
from veil.ml.lr._predict import predict_label_holder, predict_partner
from veil.ml.lr._setup import LABEL_HOLDER, PARTNER, resolve_protocol
from veil.ml.lr._train import train_label_holder, train_partner

__all__ = [
    "LABEL_HOLDER",
    "MODEL_FORMAT",
    "PARTNER",
    "HEScheme",
    "LROptions",
    "LRProtocol",
    "PartyData",
    "PartyModel",
    "Penalty",
    "Schedule",
    "TrainReport",
    "load_model",
    "predict_label_holder",
    "predict_partner",
    "resolve_protocol",
    "save_model",
    "taylor_fit_plain",
    "train_label_holder",
    "train_partner",
    "write_predictions",
]
