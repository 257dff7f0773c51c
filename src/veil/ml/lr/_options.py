"""Options of vertical logistic regression, checked once at the entry point.

Every party of a job must be given the same :class:`LROptions`; the label holder sends
a digest of them at the start and a partner with different ones stops with a
:class:`~veil.errors.ConfigError` before any data is encrypted. Key sizes and the
smallest batch are not options but rules of the :class:`~veil.policy.SecurityPolicy`
the role functions are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum

from veil.crypto.he import HEScheme
from veil.errors import ConfigError
from veil.ml.checks import check_int, check_number, class_weight_keys, options_digest
from veil.ml.labels import check_class_weight

JSONValue = str | int | float | bool | None | dict[str, float]
"""A value of :meth:`LROptions.to_json` (``class_weight`` is the one mapping)."""


class LRProtocol(StrEnum):
    """How the cross-party products are computed.

    ``he`` (member ``RESIDUALS``): every batch, residuals and scores travel encrypted
    (:mod:`veil.ml.lr._residuals`; any number of partners, class weights). ``gram``: the
    cross-party Gram block of each (fixed) batch is built once under HE and secret-shared,
    after which a step costs a few dozen HE operations (:mod:`veil.ml.lr._gram`; one
    partner, no class weights). ``auto`` (default here): ``gram`` where it applies, else
    ``he``. Both reveal each party's own batch gradient to it (see
    :mod:`veil.ml.lr._train`). In a job file, ``hetero_lr``'s ``protocol: auto`` (the
    default) means secret-sharing LR (:mod:`veil.ml.ss_lr`, no gradient revealed) and
    comes here only for what that lacks (``penalty: l1``); ``he``/``gram`` are opt-ins.
    """

    AUTO = "auto"
    RESIDUALS = "he"
    GRAM = "gram"


class Schedule(StrEnum):
    """Learning-rate schedule: ``constant`` or ``decay`` (lr / (1 + decay * epoch))."""

    CONSTANT = "constant"
    DECAY = "decay"


class Penalty(StrEnum):
    """Regularisation of the coefficients (never of the intercept)."""

    NONE = "none"
    L1 = "l1"
    L2 = "l2"


_JOB_NAMES = {"scheme": "he"}
"""Option fields whose job-file key differs from the Python name (``he: ou``)."""


@dataclass(frozen=True)
class LROptions:
    """Training options; defaults reproduce scikit-learn's AUC on default_credit.

    The defaults (batch 2048, step 0.5 / (1 + epoch), 10 epochs) were chosen on the
    clear-text algorithm over 12 batch orders: test AUC 0.7109-0.7117 against
    scikit-learn's 0.7135; a constant step of 0.5 ended anywhere in 0.7044-0.7128.

    ``batch_size`` 0 means full batch; every batch, the last one included, must have at
    least the policy's minimum rows (:meth:`veil.policy.SecurityPolicy.min_batch` of the
    widest party), a short last batch is merged into the one before it. ``alpha`` is the
    penalty strength per row (the penalty term is ``alpha * |w|`` or
    ``alpha/2 * |w|^2``). ``patience`` > 0 turns on early stopping on the validation
    set's Taylor log-loss (a validation set is then required; see
    :mod:`veil.ml.lr._validation`). ``class_weight`` is ``None``, ``"balanced"`` or
    ``{0: w0, 1: w1}``. ``clip`` winsorises each standardised feature to [-clip, clip]
    (0 = off): it keeps the Taylor residual close to the logistic one. ``tol`` stops
    training once no party's coefficients move by more than it in an epoch (0 disables).
    ``feature_bits`` is the precision of the plaintext features in the encrypted
    products ``X^T [[d]]``: each batch block is rounded to steps of 2^-feature_bits of its
    largest |value|; on default_credit 8 bits moves the clear-text replay's test AUC by
    at most 0.0001 against unrounded features (6 batch orders). ``scheme`` is the HE
    scheme (job-file key ``he``), ``key_bits`` its modulus size (checked against the
    policy). ``seed`` draws the batch order, a public choice every party makes alike.
    """

    epochs: int = 10
    batch_size: int = 2048
    learning_rate: float = 0.5
    schedule: Schedule = Schedule.DECAY
    decay: float = 1.0
    penalty: Penalty = Penalty.L2
    alpha: float = 1e-4
    patience: int = 0
    class_weight: str | Mapping[int, float] | None = None
    fit_intercept: bool = True
    standardize: bool = True
    clip: float = 3.0
    scheme: HEScheme = HEScheme.OU
    key_bits: int = 2048
    tol: float = 0.0
    feature_bits: int = 8
    seed: int = 0
    protocol: LRProtocol = LRProtocol.AUTO

    def __post_init__(self) -> None:
        f = "hetero_lr."
        check_int(f + "epochs", self.epochs, 1, fix="use at least one epoch")
        check_int(
            f + "batch_size", self.batch_size, 0, fix="use 0 for full batch or a positive size"
        )
        check_number(f + "learning_rate", self.learning_rate, positive=True)
        for name in ("decay", "alpha", "tol", "clip"):
            check_number(f + name, getattr(self, name))
        check_int(f + "patience", self.patience, 0, fix="use 0 to disable early stopping")
        check_int(
            f + "feature_bits", self.feature_bits, 4, 32, fix="use 8 (fast) to 16 (near exact)"
        )
        check_int(f + "key_bits", self.key_bits, 1, fix="use 2048 or more")
        check_int(f + "seed", self.seed, 0, fix="use a non-negative integer")
        for name, enum in (
            ("schedule", Schedule),
            ("penalty", Penalty),
            ("scheme", HEScheme),
            ("protocol", LRProtocol),
        ):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                raise ConfigError(
                    f"hetero_lr.{_JOB_NAMES.get(name, name)}",
                    f"unknown value {value!r}",
                    f"use one of {[e.value for e in enum]}",
                ) from None
        cw = check_class_weight(self.class_weight, "hetero_lr.class_weight")
        object.__setattr__(self, "class_weight", cw)

    def learning_rate_at(self, epoch: int) -> float:
        """Step size of ``epoch`` (0-based) under the schedule."""
        if self.schedule is Schedule.DECAY:
            return self.learning_rate / (1.0 + self.decay * epoch)
        return self.learning_rate

    def to_json(self) -> dict[str, JSONValue]:
        """Plain-JSON form under the job-file keys (``he``, enums as strings), for model
        files and the digest; :meth:`from_mapping` reads it back."""
        out: dict[str, JSONValue] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, StrEnum):
                v = v.value
            elif isinstance(v, Mapping):
                v = {str(k): float(x) for k, x in v.items()}
            out[_JOB_NAMES.get(f.name, f.name)] = v
        return out

    def digest(self) -> str:
        """Short hash every party compares before training starts."""
        return options_digest(self.to_json())

    @classmethod
    def job_keys(cls) -> tuple[str, ...]:
        """The keys a job file's ``hetero_lr`` mapping may use for these options."""
        return tuple(_JOB_NAMES.get(f.name, f.name) for f in fields(cls))

    @classmethod
    def from_mapping(cls, m: Mapping[str, object]) -> LROptions:
        """Build from a job file's mapping (job-file keys), naming any unknown key."""
        known = cls.job_keys()
        py_name = {v: k for k, v in _JOB_NAMES.items()}
        kwargs: dict[str, object] = {}
        for k, v in m.items():
            if k not in known:
                raise ConfigError(f"hetero_lr.{k}", "unknown option", f"use one of {sorted(known)}")
            kwargs[py_name.get(k, k)] = v
            if k == "class_weight":
                kwargs[k] = class_weight_keys(v, "hetero_lr.class_weight")
        return cls(**kwargs)  # type: ignore[arg-type]
