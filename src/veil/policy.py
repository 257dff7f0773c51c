"""The one security policy every protocol consults.

A :class:`SecurityPolicy` says how large keys must be per scheme, which elliptic-curve
suites a PSI may use, how many rows a training batch needs before its gradient stops
pinning down single rows, and the statistical security parameter (failure
probabilities such as a cuckoo-hashing overflow stay below ``2**-stat_sec``).

Role functions take ``policy: SecurityPolicy = DEFAULT_POLICY`` as a keyword. Job files
cannot name a policy: the job runner always passes :data:`DEFAULT_POLICY`. The single
relaxation, :data:`TEST_POLICY`, is for tests only (small keys so that the suite runs
fast); every other rule of it equals the default. A test that must show an attack
succeeding against a deliberately weakened configuration builds its own policy with
:func:`dataclasses.replace` and says so in its name.

This module sits at the bottom of the package (beside :mod:`veil.errors` and
:mod:`veil.codec`): every layer may import it, it imports nothing of Veil's but errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from veil.errors import ConfigError

__all__ = ["DEFAULT_POLICY", "TEST_POLICY", "SecurityPolicy"]


def _default_key_bits() -> Mapping[str, int]:
    return MappingProxyType({"paillier": 2048, "ou": 2048})


@dataclass(frozen=True)
class SecurityPolicy:
    """Security rules shared by every protocol (see the module docstring).

    - ``min_key_bits``: smallest modulus per HE scheme (NIST SP 800-57: 2048 bits ~ 112-bit
      security).
    - ``psi_suites``: the elliptic-curve suites a PSI may run with.
    - ``min_batch_rows`` and ``batch_rows_per_feature``: every training batch, the last
      one included, has at least ``max(min_batch_rows, batch_rows_per_feature * f)`` rows
      where ``f`` is the largest number of features any party holds. A party learns its
      own batch gradient ``X_bᵀ r_b``; with no more rows than columns that system is
      solvable for the per-row residuals ``r_b`` (hence labels or a partner's scores).
    - ``stat_sec``: statistical security parameter in bits.
    """

    name: str = "default"
    min_key_bits: Mapping[str, int] = field(default_factory=_default_key_bits)
    psi_suites: frozenset[str] = frozenset({"ristretto255", "curve25519-hash-as-x"})
    min_batch_rows: int = 64
    batch_rows_per_feature: int = 4
    stat_sec: int = 40

    def check_key_bits(self, scheme: str, bits: object, field: str = "key_bits") -> None:
        """Raise :class:`ConfigError` naming ``field`` if ``bits`` is below the minimum."""
        floor = self.min_key_bits.get(scheme)
        if floor is None:
            raise ConfigError(
                field, f"no key size rule for scheme '{scheme}'", f"use one of {self.schemes()}"
            )
        if isinstance(bits, bool) or not isinstance(bits, int) or bits < floor:
            raise ConfigError(
                field,
                f"{bits}-bit {scheme} key is below the {floor}-bit minimum of policy '{self.name}'",
                f"use {field}: {floor} or more",
            )

    def check_suite(self, suite: str, field: str = "suite") -> None:
        """Raise :class:`ConfigError` if ``suite`` is not an allowed PSI suite."""
        if suite not in self.psi_suites:
            raise ConfigError(
                field,
                f"suite '{suite}' is not allowed by policy '{self.name}'",
                f"use one of {sorted(self.psi_suites)}",
            )

    def min_batch(self, max_features: int) -> int:
        """Fewest rows any training batch may have when the widest party has
        ``max_features`` columns."""
        return max(self.min_batch_rows, self.batch_rows_per_feature * max(int(max_features), 1))

    def schemes(self) -> list[str]:
        """The HE schemes this policy has a key-size rule for."""
        return sorted(self.min_key_bits)


DEFAULT_POLICY = SecurityPolicy()
"""What every job runs under."""

TEST_POLICY = SecurityPolicy(
    name="test (insecure keys, tests only)",
    min_key_bits=MappingProxyType({"paillier": 512, "ou": 512}),
)
"""Small keys so that tests run fast; every other rule as :data:`DEFAULT_POLICY`."""
