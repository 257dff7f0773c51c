"""Vertical (hetero) logistic regression: the public entry points.

Training (:mod:`veil.ml.lr_protocol`, which documents the protocol and what each
party learns), joint prediction (:mod:`veil.ml.lr_predict`), options
(:mod:`veil.ml.lr_options`) and per-party model files (:mod:`veil.ml.lr_model`).

    model, report = train_label_holder(session, data, LROptions(), valid=None)
    model, report = train_partner(session, data, LROptions(), valid=None)
    scores = predict_label_holder(session, data, model)   # partners: predict_partner
    save_model(model, "out/model.json"); load_model("out/model.json")
"""

from __future__ import annotations

from veil.crypto.he import HEScheme
from veil.ml.lr_model import (
    PartyData,
    PartyModel,
    load_model,
    save_model,
    write_predictions,
)
from veil.ml.lr_options import LROptions, LRProtocol, Penalty, Schedule
from veil.ml.lr_predict import predict_label_holder, predict_partner
from veil.ml.lr_protocol import (
    LABEL_HOLDER,
    PARTNER,
    Tag,
    TrainReport,
    train_label_holder,
    train_partner,
)

__all__ = [
    "LABEL_HOLDER",
    "PARTNER",
    "HEScheme",
    "LROptions",
    "LRProtocol",
    "PartyData",
    "PartyModel",
    "Penalty",
    "Schedule",
    "Tag",
    "TrainReport",
    "load_model",
    "predict_label_holder",
    "predict_partner",
    "save_model",
    "train_label_holder",
    "train_partner",
    "write_predictions",
]
