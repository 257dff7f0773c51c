"""Horizontal federated learning: banks with the same columns train one model by
FedAvg/FedProx, every sum taken by secure aggregation, optionally with distributed
differential privacy. The protocol and what each party learns:
:mod:`veil.ml.horizontal.fedavg`."""

from veil.ml.horizontal.fedavg import FedResult, train_aggregator, train_client
from veil.ml.horizontal.local import BankData, fit_central, score
from veil.ml.horizontal.model import GlobalModel, load_model, save_model
from veil.ml.horizontal.models import ModelSpec
from veil.ml.horizontal.options import DPOptions, FedAvgOptions

__all__ = [
    "BankData",
    "DPOptions",
    "FedAvgOptions",
    "FedResult",
    "GlobalModel",
    "ModelSpec",
    "fit_central",
    "load_model",
    "save_model",
    "score",
    "train_aggregator",
    "train_client",
]
