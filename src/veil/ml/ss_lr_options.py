"""Options of secret-sharing vertical LR (:mod:`veil.ml.ss_lr`), checked once.

The shape follows :class:`veil.ml.lr.LROptions` (same names and meanings for
``epochs``, ``batch_size``, ``learning_rate``, ``schedule``, ``decay``, ``penalty``,
``alpha``, ``class_weight``, ``fit_intercept``, ``standardize``, ``clip``, ``he``,
``key_bits``, ``seed``, ``patience``, ``tol``) so that ``hetero_lr`` (``protocol: ss``, or
``auto``, the default) can hand its mapping to :meth:`SSLROptions.from_mapping`.
``patience`` > 0 stops on the validation Taylor log-loss computed on shares (only the
scalar loss is revealed, to the label holder; :mod:`veil.ml.ss_lr_epochs`). ``tol`` > 0
stops once the Euclidean norm of an epoch's whole step ``|w_after - w_before|_2`` is
below it: a stricter test than the HE protocol's largest move per coefficient (the norm
is at least the largest move), so SS-LR never stops earlier than ``he`` would; values
below ``2^-frac_bits`` are below the weights' resolution. Not available: ``penalty:
l1`` (its proximal step needs comparisons on shares; ``protocol: he`` offers it).
``feature_bits`` (HE rounding) is ignored, replaced here by ``feature_frac_bits``.
Options of SS-LR only:

``sigmoid``            ``linear`` (0.5 + z/4, default), ``minimax3`` or ``minimax5``
                       (:mod:`veil.mpc.nonlinear`).
``frac_bits``          fraction bits of shared values (weights, scores, residuals).
``feature_frac_bits``  fraction bits of the features (2^-10 = 0.001 of a standard
                       deviation by default); the product of a feature and a residual
                       carries both and is truncated by the feature's.
``dealer``             a party (not a data party) that makes the Beaver triples; null:
                       the label holder and the first partner make them under ``he``
                       with ``key_bits`` keys (slower, no third party).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from veil.errors import ConfigError
from veil.ml.checks import check_int, check_number, class_weight_keys, options_digest
from veil.ml.labels import check_class_weight
from veil.mpc.nonlinear import Sigmoid

__all__ = ["SSLROptions"]

_SCHEDULES = ("constant", "decay")
_PENALTIES = ("none", "l2")
_HE = ("ou", "paillier")
_PROTOCOLS = ("ss", "auto")  # the values of the LR option ``protocol`` that mean SS-LR
_IGNORED = ("feature_bits",)


@dataclass(frozen=True)
class SSLROptions:
    """Training options; see the module docstring."""

    epochs: int = 10
    batch_size: int = 2048
    learning_rate: float = 0.5
    schedule: str = "decay"
    decay: float = 1.0
    penalty: str = "l2"
    alpha: float = 1e-4
    class_weight: str | Mapping[int, float] | None = None
    patience: int = 0
    tol: float = 0.0
    fit_intercept: bool = True
    standardize: bool = True
    clip: float = 3.0
    seed: int | None = None
    sigmoid: str = "linear"
    frac_bits: int = 16
    feature_frac_bits: int = 10
    dealer: str | None = None
    he: str = "ou"
    key_bits: int = 2048

    def __post_init__(self) -> None:
        f = "hetero_lr."
        check_int(f + "epochs", self.epochs, 1)
        check_int(f + "patience", self.patience, 0, fix="use 0 to disable early stopping")
        check_int(f + "batch_size", self.batch_size, 0)
        check_int(f + "frac_bits", self.frac_bits, 8, 24)
        check_int(f + "feature_frac_bits", self.feature_frac_bits, 4, self.frac_bits)
        check_int(f + "key_bits", self.key_bits, 512)
        if self.seed is not None:
            check_int(f + "seed", self.seed, 0)
        check_number(f + "learning_rate", self.learning_rate, positive=True)
        for name in ("decay", "alpha", "clip", "tol"):
            check_number(f + name, getattr(self, name))
        for name, allowed in (("schedule", _SCHEDULES), ("penalty", _PENALTIES), ("he", _HE)):
            if getattr(self, name) not in allowed:
                other = " (or protocol: he, which reveals each party's gradient)"
                raise ConfigError(
                    f"hetero_lr.{name}",
                    f"{getattr(self, name)!r} is not supported by protocol ss",
                    f"use one of {list(allowed)}" + (other if name == "penalty" else ""),
                )
        try:
            object.__setattr__(self, "sigmoid", str(Sigmoid(self.sigmoid)))
        except ValueError:
            raise ConfigError(
                "hetero_lr.sigmoid", f"unknown {self.sigmoid!r}", f"use one of {list(Sigmoid)}"
            ) from None
        if not isinstance(self.fit_intercept, bool) or not isinstance(self.standardize, bool):
            raise ConfigError("hetero_lr.fit_intercept", "fit_intercept/standardize: true/false")
        if self.dealer is not None and (not isinstance(self.dealer, str) or not self.dealer):
            raise ConfigError("hetero_lr.dealer", "must be a party name", "or null (no dealer)")
        cw = check_class_weight(self.class_weight, "hetero_lr.class_weight")
        object.__setattr__(self, "class_weight", cw)

    def learning_rate_at(self, epoch: int) -> float:
        """Step size of ``epoch`` (0-based): lr, or lr / (1 + decay * epoch)."""
        if self.schedule == "decay":
            return self.learning_rate / (1.0 + self.decay * epoch)
        return self.learning_rate

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        if isinstance(self.class_weight, Mapping):
            d["class_weight"] = {str(k): v for k, v in self.class_weight.items()}
        return d

    def digest(self) -> str:
        """Short hash every party compares before training starts."""
        return options_digest(self.to_json())

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> SSLROptions:
        """Build from a job file's (``hetero_lr``) mapping, naming any unknown key."""
        known = set(cls.__dataclass_fields__)
        d: dict[str, Any] = {}
        for k, v in m.items():
            if k in _IGNORED:
                continue
            if k == "protocol":
                if v not in _PROTOCOLS:
                    raise ConfigError(
                        "hetero_lr.protocol", f"{v!r} is not secret-sharing LR", "use ss or auto"
                    )
                continue
            if k not in known:
                raise ConfigError(f"hetero_lr.{k}", "unknown option", f"use one of {sorted(known)}")
            d[k] = v
        if "class_weight" in d:
            d["class_weight"] = class_weight_keys(d["class_weight"], "hetero_lr.class_weight")
        return cls(**d)
