"""Vertical SecureBoost: lossless federated gradient-boosted trees (Cheng et al. 2021).

Roles: ``run_label_holder`` / ``run_partner`` train; ``run_predict_label_holder``
/ ``run_predict_partner`` score; ``fit_plain`` is the plaintext reference that
federated training equals. See :mod:`veil.ml.secureboost.protocol` for the flow
and what each party learns, :mod:`veil.ml.secureboost.messages` for the typed
messages. Role functions take ``policy: SecurityPolicy = DEFAULT_POLICY``
(:mod:`veil.policy`), which the HE key must meet.

This package's public API is what ``__all__`` lists; its other modules
(``core``, ``grow``, ``gh_crypto`` ...) are its implementation.
"""

from veil.crypto.he import HEScheme
from veil.ml.secureboost.messages import Op, Tag
from veil.ml.secureboost.model import LabelHolderModel, PartnerModel, load, save
from veil.ml.secureboost.params import Objective, SBTParams
from veil.ml.secureboost.partner import run_partner
from veil.ml.secureboost.plain import PlainModel, fit_plain
from veil.ml.secureboost.predict import run_predict_label_holder, run_predict_partner
from veil.ml.secureboost.protocol import run_label_holder

__all__ = [
    "HEScheme",
    "LabelHolderModel",
    "Objective",
    "Op",
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
