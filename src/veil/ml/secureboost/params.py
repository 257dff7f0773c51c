"""SecureBoost options: one frozen dataclass, enums, and validation with clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from veil.crypto.he import HEScheme
from veil.errors import ConfigError


class Objective(StrEnum):
    """What the trees fit: log-loss on 0/1 labels or squared error."""

    BINARY = "binary"
    REGRESSION = "regression"


@dataclass(frozen=True)
class SBTParams:
    """Hyper-parameters, named and defaulted as in XGBoost where they exist there.

    ``hide_instance_space``: partners never learn which rows reach which node (see
    :mod:`veil.ml.secureboost.protocol`); costs one encryption pass per built node.
    ``he``: OU by default (its ~680-bit plaintexts hold several packed (G, H) sums);
    Paillier packs more per ciphertext but encrypts and adds slower.
    ``precision_bits``: g and h are quantised to this many bits relative to the
    tree's largest |g| / |h| (the plaintext reference quantises identically); the
    default 24 is the precision of XGBoost's float32 gradient pairs.
    ``key_bits`` must meet the :class:`~veil.policy.SecurityPolicy` the role
    functions are given (jobs: the default policy, 2048 bits).
    ``class_weight``: ``(w0, w1)``, the weight of rows labelled 0 and 1.
    """

    objective: Objective = Objective.BINARY
    n_trees: int = 10
    max_depth: int = 3
    learning_rate: float = 0.3
    min_child_weight: float = 1.0
    reg_lambda: float = 1.0
    gamma: float = 0.0
    max_bin: int = 32
    subsample: float = 1.0
    colsample: float = 1.0
    early_stopping_rounds: int = 0
    class_weight: tuple[float, float] | None = None
    he: HEScheme = HEScheme.OU
    key_bits: int = 2048
    precision_bits: int = 24
    hide_instance_space: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        def need(ok: bool, field: str, problem: str, fix: str) -> None:
            if not ok:
                raise ConfigError(f"secureboost.{field}", problem, fix)

        need(self.n_trees >= 1, "n_trees", f"is {self.n_trees}", "use at least 1 tree")
        need(1 <= self.max_depth <= 16, "max_depth", f"is {self.max_depth}", "use 1..16")
        need(0 < self.learning_rate <= 1, "learning_rate", "must be in (0, 1]", "e.g. 0.3")
        need(self.min_child_weight >= 0, "min_child_weight", "is negative", "use >= 0")
        need(self.reg_lambda >= 0, "reg_lambda", "is negative", "use >= 0")
        need(self.gamma >= 0, "gamma", "is negative", "use >= 0")
        need(2 <= self.max_bin <= 256, "max_bin", f"is {self.max_bin}", "use 2..256")
        need(0 < self.subsample <= 1, "subsample", "must be in (0, 1]", "e.g. 0.8")
        need(0 < self.colsample <= 1, "colsample", "must be in (0, 1]", "e.g. 0.8")
        need(self.early_stopping_rounds >= 0, "early_stopping_rounds", "is negative", "use 0")
        need(16 <= self.precision_bits <= 44, "precision_bits", "out of range", "use 16..44")
        if self.class_weight is not None:
            need(
                len(self.class_weight) == 2 and min(self.class_weight) > 0,
                "class_weight",
                f"is {self.class_weight}",
                "give two positive weights (w0, w1)",
            )
            need(
                self.objective == Objective.BINARY,
                "class_weight",
                "only applies to binary classification",
                "drop it or use objective: binary",
            )
        need(
            isinstance(self.key_bits, int) and not isinstance(self.key_bits, bool),
            "key_bits",
            f"is {self.key_bits!r}",
            "use an integer such as 2048",
        )
