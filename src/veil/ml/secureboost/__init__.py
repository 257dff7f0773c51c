"""Vertical SecureBoost: lossless federated gradient-boosted trees (Cheng et al. 2021).

Roles: ``run_label_holder`` / ``run_partner`` train; ``run_predict_label_holder``
/ ``run_predict_partner`` score; ``fit_plain`` is the plaintext reference that
federated training equals. See :mod:`veil.ml.secureboost.protocol` for the flow
and what each party learns.
"""

from veil.crypto.he import HEScheme
from veil.ml.secureboost.model import LabelHolderModel, PartnerModel, load, save
from veil.ml.secureboost.params import Objective, SBTParams
from veil.ml.secureboost.partner import run_partner
from veil.ml.secureboost.plain import PlainModel, fit_plain
from veil.ml.secureboost.predict import run_predict_label_holder, run_predict_partner
from veil.ml.secureboost.protocol import Tag, run_label_holder

__all__ = [
    "HEScheme",
    "LabelHolderModel",
    "Objective",
    "PartnerModel",
    "PlainModel",
    "SBTParams",
    "Tag",
    "fit_plain",
    "load",
    "run_label_holder",
    "run_partner",
    "run_predict_label_holder",
    "run_predict_partner",
    "save",
]
