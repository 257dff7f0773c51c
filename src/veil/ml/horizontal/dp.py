"""Distributed differential privacy for FedAvg (DP-FedAvg, McMahan et al., ICLR 2018,
with the noise split across banks as in Kairouz et al., ICML 2021).

Each bank clips its model update to L2 norm ``clip`` and adds Gaussian noise of
variance ``(noise_multiplier * clip)^2 / n`` where n is the number of banks in the
round, so the securely aggregated sum carries the full noise ``noise_multiplier *
clip`` although no party ever sees an update without the others' noise. The privacy
unit is one bank's contribution in a round (sensitivity ``clip`` under add/remove);
when banks drop the sum holds less noise, and when the aggregator is a bank it knows
its own share: the accountant is charged for the noise the aggregator cannot remove.

The budget is computed by Google's ``dp-accounting`` (Rényi DP accountant, Mironov
2017), composed round by round. Noise is drawn with numpy's PCG64 seeded from the OS
generator (:mod:`secrets`); floating-point sampling is not hardened against the
attacks of Mironov (CCS 2012) on the least significant bits.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

import numpy as np

from veil.errors import ConfigError
from veil.ml.horizontal.models import FloatArray
from veil.ml.horizontal.options import DPOptions


def clip(update: FloatArray, bound: float) -> FloatArray:
    """``update`` scaled down to L2 norm ``bound`` if it is longer."""
    norm = float(np.linalg.norm(update))
    return update * min(1.0, bound / norm) if norm > 0 else update


def noise_share(dim: int, opts: DPOptions, n_banks: int) -> FloatArray:
    """This bank's share of the Gaussian noise for a sum over ``n_banks`` banks."""
    rng = np.random.default_rng(secrets.randbits(128))
    sd = opts.noise_multiplier * opts.clip / math.sqrt(n_banks)
    return rng.normal(scale=sd, size=dim)


class Accountant:
    """Epsilon at ``delta`` after each round (RDP accountant of ``dp-accounting``)."""

    def __init__(self, opts: DPOptions) -> None:
        try:
            import dp_accounting
            from dp_accounting.rdp import rdp_privacy_accountant
        except ImportError:
            raise ConfigError(
                "dp",
                "needs Google's dp-accounting package to compute the privacy budget",
                "pip install 'veil[dp]' (or dp-accounting)",
            ) from None
        self._events = dp_accounting
        self._acc = rdp_privacy_accountant.RdpAccountant()
        self.opts = opts

    def add_round(self, in_sum: int, planned: int, known: int = 0) -> float:
        """Charge one round whose sum holds the noise of ``in_sum`` banks of the
        ``planned`` that each added 1/planned of the variance, ``known`` of them to the
        aggregator; return epsilon so far."""
        hidden = max(in_sum - known, 0)
        if hidden == 0:
            raise ConfigError(
                "dp", "no noise the aggregator does not know is left in the sum", "more banks"
            )
        z = self.opts.noise_multiplier * math.sqrt(hidden / planned)
        self._acc.compose(self._events.GaussianDpEvent(z))
        return self.epsilon()

    def epsilon(self) -> float:
        return float(self._acc.get_epsilon(self.opts.delta))

    def summary(self) -> dict[str, Any]:
        """What is written with the model."""
        return {
            "epsilon": self.epsilon(),
            "delta": self.opts.delta,
            "clip": self.opts.clip,
            "noise_multiplier": self.opts.noise_multiplier,
            "accountant": "dp-accounting RDP",
            "unit": "one bank's update per round",
        }
