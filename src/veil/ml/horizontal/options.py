"""Options of horizontal federated training, checked once at the entry point.

Every party of a job gets the same :class:`FedAvgOptions` (the job file); banks and
the aggregator check the parts they need. ``from_mapping`` turns a job file's
``fedavg:`` block into options, rejecting each mistake with a :class:`ConfigError`
that names the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from veil.errors import ConfigError
from veil.ml.horizontal.models import MODELS, ModelSpec
from veil.ml.labels import ClassWeight
from veil.protocols.secagg import SecAggParams


@dataclass(frozen=True)
class DPOptions:
    """Differential privacy per bank (DP-FedAvg, McMahan et al., ICLR 2018): each bank
    clips its update to L2 norm ``clip`` and adds its share of Gaussian noise, so the
    sum carries noise of standard deviation ``noise_multiplier * clip``; the budget is
    epsilon at ``delta``. The privacy unit is one bank's whole contribution."""

    clip: float = 1.0
    noise_multiplier: float = 1.0
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if not self.clip > 0:
            raise ConfigError("dp.clip", f"must be > 0, got {self.clip}", "e.g. 1.0")
        if not self.noise_multiplier > 0:
            raise ConfigError("dp.noise_multiplier", "must be > 0", "e.g. 1.0")
        if not 0 < self.delta < 1:
            raise ConfigError("dp.delta", f"must be in (0, 1), got {self.delta}", "e.g. 1e-5")


@dataclass(frozen=True)
class FedAvgOptions:
    """Training options (McMahan et al., AISTATS 2017; FedProx: Li et al., MLSys 2020).

    - ``model``: ``logistic`` or ``mlp`` (``hidden`` widths, ReLU).
    - ``rounds`` of FedAvg, each ``local_epochs`` of mini-batch SGD (``batch_size``,
      ``learning_rate``) at every bank from the global model.
    - ``fedprox_mu``: proximal term ``mu/2 |w - w_global|^2`` for non-IID banks.
    - ``class_weight`` (None, ``balanced``, ``{0: w0, 1: w1}``) and ``focal_gamma``
      (> 0: focal loss) for rare positives.
    - ``validation_share``: rows each bank holds out (stratified); they decide
      ``early_stopping`` (patience in rounds, 0 = off) on the pooled validation loss
      and are scored as held-out rows afterwards.
    - ``standardize``: scale features by the pooled mean and standard deviation
      (securely summed once before training).
    - ``secure_aggregation`` (default true), ``dropout_threshold``, ``neighbours``,
      ``frac_bits``, ``phase_timeout``: see :mod:`veil.protocols.secagg`.
    - ``dp``: :class:`DPOptions`, or None.
    """

    model: str = "logistic"
    hidden: tuple[int, ...] = (16,)
    rounds: int = 10
    local_epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 0.1
    fedprox_mu: float = 0.0
    class_weight: ClassWeight = None
    focal_gamma: float = 0.0
    validation_share: float = 0.2
    early_stopping: int = 0
    standardize: bool = True
    secure_aggregation: bool = True
    dropout_threshold: int | None = None
    neighbours: int | None = None
    frac_bits: int = 24
    phase_timeout: float | None = None
    dp: DPOptions | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        ModelSpec(self.model, tuple(self.hidden))
        for name in ("rounds", "local_epochs", "batch_size"):
            _int(getattr(self, name), name, lo=1)
        _int(self.early_stopping, "early_stopping", lo=0)
        _int(self.seed, "seed", lo=0)
        _num(self.learning_rate, "learning_rate", lo=0.0, open_lo=True)
        _num(self.fedprox_mu, "fedprox_mu", lo=0.0)
        _num(self.focal_gamma, "focal_gamma", lo=0.0)
        _num(self.validation_share, "validation_share", lo=0.0, hi=0.9)
        if self.early_stopping and self.validation_share == 0:
            raise ConfigError(
                "early_stopping", "needs held-out rows", "set validation_share, e.g. 0.2"
            )
        if self.dp is not None:
            if self.early_stopping:
                raise ConfigError(
                    "early_stopping",
                    "the pooled validation loss it reads is not covered by dp",
                    "turn early_stopping off with dp",
                )
            if self.standardize:
                raise ConfigError(
                    "standardize",
                    "pooled feature means are not covered by dp",
                    "scale features before the job and set standardize: false with dp",
                )
        if self.dropout_threshold is not None and not self.secure_aggregation:
            raise ConfigError("dropout_threshold", "applies to secure_aggregation only")
        self.secagg_params()  # checks frac_bits and phase_timeout

    @property
    def spec(self) -> ModelSpec:
        """The model to train."""
        return ModelSpec(self.model, tuple(self.hidden))

    def secagg_params(self) -> SecAggParams:
        """Options of each secure-aggregation round."""
        return SecAggParams(
            neighbours=self.neighbours,
            dropout_threshold=self.dropout_threshold,
            frac_bits=self.frac_bits,
            phase_timeout=self.phase_timeout,
        )

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> FedAvgOptions:
        """Options from a job file's mapping (unknown keys are refused)."""
        known = [f.name for f in fields(cls)]
        for k in d:
            if k not in known:
                raise ConfigError(str(k), "unknown parameter", "use one of " + ", ".join(known))
        kw = dict(d)
        if "hidden" in kw:
            h = kw["hidden"]
            if not isinstance(h, list | tuple) or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in h
            ):
                raise ConfigError("hidden", f"must be a list of layer widths, got {h!r}", "[16]")
            kw["hidden"] = tuple(h)
        if isinstance(kw.get("class_weight"), Mapping):
            kw["class_weight"] = {int(k): float(v) for k, v in kw["class_weight"].items()}
        dp = kw.get("dp")
        if dp is True:
            kw["dp"] = DPOptions()
        elif dp is False:
            kw["dp"] = None
        elif isinstance(dp, Mapping):
            allowed = [f.name for f in fields(DPOptions)]
            for k in dp:
                if k not in allowed:
                    raise ConfigError(f"dp.{k}", "unknown parameter", f"use one of {allowed}")
            kw["dp"] = DPOptions(**{k: _float(v, f"dp.{k}") for k, v in dp.items()})
        elif dp is not None:
            raise ConfigError("dp", f"must be true, false or a mapping, got {dp!r}")
        if kw.get("early_stopping") is False:
            kw["early_stopping"] = 0
        for key in ("standardize", "secure_aggregation"):
            if key in kw and not isinstance(kw[key], bool):
                raise ConfigError(key, f"must be true or false, got {kw[key]!r}")
        if "model" in kw and kw["model"] not in MODELS:
            raise ConfigError("model", f"unknown model {kw['model']!r}", f"use one of {MODELS}")
        return cls(**kw)


def _float(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(name, f"must be a number, got {v!r}")
    return float(v)


def _int(v: Any, name: str, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(name, f"must be an integer >= {lo}, got {v!r}")


def _num(v: Any, name: str, lo: float, hi: float | None = None, *, open_lo: bool = False) -> None:
    x = _float(v, name)
    if x < lo or (open_lo and x == lo) or (hi is not None and x > hi):
        rng = f"({lo}" if open_lo else f"[{lo}"
        rng += f", {hi}]" if hi is not None else ", inf)"
        raise ConfigError(name, f"must be in {rng}, got {v!r}")
