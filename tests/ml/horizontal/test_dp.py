"""Distributed differential privacy: clipping, noise shares, the accountant, and the
noise really present in the securely aggregated sum."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from tests.ml.horizontal.helpers import HUB, bank_data, federate, small_banks
from veil.ml.horizontal import DPOptions, FedAvgOptions, dp
from veil.ml.horizontal.fedavg import _Local
from veil.ml.horizontal.local import local_train

dp_accounting = pytest.importorskip("dp_accounting")


def test_clip_bounds_the_norm_and_keeps_short_updates() -> None:
    u = np.array([3.0, 4.0])
    assert np.linalg.norm(dp.clip(u, 1.0)) == pytest.approx(1.0)
    np.testing.assert_array_equal(dp.clip(u, 10.0), u)
    np.testing.assert_array_equal(dp.clip(np.zeros(3), 1.0), np.zeros(3))


def test_noise_shares_add_up_to_the_full_noise() -> None:
    opts = DPOptions(clip=0.5, noise_multiplier=1.2)
    shares = [dp.noise_share(50_000, opts, 4) for _ in range(4)]
    assert np.std(shares[0]) == pytest.approx(0.6 / 2, rel=0.02)
    assert np.std(sum(shares)) == pytest.approx(0.6, rel=0.02)
    assert not np.array_equal(shares[0], shares[1])


def test_accountant_matches_dp_accounting_and_charges_for_missing_noise() -> None:
    opts = DPOptions(noise_multiplier=1.1, delta=1e-5)
    acc = dp.Accountant(opts)
    eps = [acc.add_round(5, 5) for _ in range(10)]
    ref = dp_accounting.rdp.RdpAccountant()
    ref.compose(dp_accounting.GaussianDpEvent(1.1), 10)
    assert eps[-1] == pytest.approx(ref.get_epsilon(1e-5), rel=1e-9)
    assert all(a < b for a, b in itertools.pairwise(eps))
    full = dp.Accountant(opts).add_round(5, 5)
    assert full < dp.Accountant(opts).add_round(3, 5)  # banks dropped: less noise in the sum
    assert full < dp.Accountant(opts).add_round(5, 5, known=1)  # the aggregator's own share


def test_fedavg_with_dp_noises_the_sum_and_reports_epsilon() -> None:
    data = bank_data(small_banks(3, 200, seed=4))
    z, clip = 1.0, 0.05
    opts = FedAvgOptions(
        model="mlp",
        hidden=(32,),
        rounds=1,
        standardize=False,
        dp=DPOptions(clip=clip, noise_multiplier=z, delta=1e-5),
    )
    out = federate(data, opts)
    model = out[HUB].model
    assert model.dp is not None and model.dp["delta"] == 1e-5
    assert model.history[0]["epsilon"] == pytest.approx(model.dp["epsilon"])
    assert out["bank0"].model.dp == model.dp  # every party writes it with the model
    # Rebuild the clipped updates: what remains of the sum is the banks' joint noise.
    theta0 = opts.spec.init(3, opts.seed)
    clipped = []
    for b, d in data.items():
        local = _Local(d, opts, b)
        new, _ = local_train(opts.spec, theta0, local.fit, opts, local.rng, anchor=theta0)
        clipped.append(dp.clip(new - theta0, clip))
    noise = 3 * (model.params - theta0) - sum(clipped)
    assert noise.size == 161
    assert np.std(noise) == pytest.approx(z * clip, rel=0.2)
    # More rounds, more epsilon.
    three = federate(data, dataclasses.replace(opts, rounds=3))[HUB].model
    eps = [h["epsilon"] for h in three.history]
    assert eps[0] < eps[1] < eps[2] == pytest.approx(three.dp["epsilon"])
