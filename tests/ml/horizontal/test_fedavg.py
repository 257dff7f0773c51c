"""FedAvg over secure aggregation: same model as plain FedAvg, central-level accuracy,
any aggregator, clear errors, early stopping, and a clean wire."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.ml.horizontal.helpers import (
    BANKS,
    HUB,
    bank_data,
    credit,
    federate,
    small_banks,
)
from tests.wire_check import Recorder, assert_no_leak
from veil.errors import ConfigError
from veil.ml.horizontal import (
    BankData,
    FedAvgOptions,
    GlobalModel,
    fit_central,
    score,
    train_aggregator,
    train_client,
)
from veil.ml.horizontal.fedavg import _Local
from veil.ml.horizontal.local import local_train, row_weights
from veil.ml.metrics import auc
from veil.net import Session, run_parties
from veil.protocols.secagg import AGGREGATOR, RoundAborted
from veil.protocols.secagg import Tag as SecAggTag
from veil.protocols.secagg.masks import DEFAULT_FRAC_BITS


def test_secure_aggregation_gives_plain_fedavg_to_the_stated_precision() -> None:
    data = bank_data(small_banks(3, 400))
    opts = FedAvgOptions(rounds=1, standardize=False, learning_rate=0.3)
    sec = federate(data, opts)[HUB].model
    plain = federate(data, dataclasses.replace(opts, secure_aggregation=False))[HUB].model
    n_rows = sum(round(0.8 * d.y.size) for d in data.values())
    bound = 3 * 2.0 ** -(DEFAULT_FRAC_BITS + 1) / n_rows  # 3 banks' rounding, / rows
    assert 0 < np.abs(sec.params - plain.params).max() <= bound
    # Over several rounds with pooled scaling the rounding errors stay as small.
    opts = FedAvgOptions(rounds=5, model="mlp", hidden=(4,), learning_rate=0.1)
    sec = federate(data, opts)[HUB].model
    plain = federate(data, dataclasses.replace(opts, secure_aggregation=False))[HUB].model
    np.testing.assert_allclose(sec.mean, plain.mean, atol=1e-9)
    np.testing.assert_allclose(sec.params, plain.params, atol=1e-7)


def test_memory_and_grpc_and_any_aggregator_give_the_same_model() -> None:
    data = bank_data(small_banks(3, 200, seed=1))
    opts = FedAvgOptions(rounds=3, model="mlp", hidden=(4,), learning_rate=0.2)
    hub = federate(data, opts)
    grpc = federate(data, opts, transport="grpc")
    bank_agg = federate(data, opts, aggregator="bank0")
    # Sums in the ring are exact whatever the masks: the three runs agree to the bit.
    ref = hub[HUB].model.params
    assert np.array_equal(grpc[HUB].model.params, ref)
    assert np.array_equal(bank_agg["bank0"].model.params, ref)
    for b in data:
        assert np.array_equal(hub[b].model.params, ref)
        assert hub[b].holdout is not None and hub[b].holdout.sum() == 40
    assert hub[HUB].holdout is None
    assert len(hub[HUB].model.history) == 3 and hub["bank1"].model.history[0]["banks"] == 3


def test_global_model_matches_central_training_and_beats_every_bank_alone() -> None:
    data = bank_data({b: credit(b) for b in BANKS})
    opts = FedAvgOptions(model="mlp", hidden=(16,), rounds=30, local_epochs=2, learning_rate=0.05)
    out = federate(data, opts)
    test = credit("test")
    yt = test["y"].to_numpy()
    fed = auc(yt, out[HUB].model.score_frame(test))
    fit = {b: ~out[b].holdout for b in BANKS}  # the same training rows for every model
    X = np.vstack([data[b].X[fit[b]] for b in BANKS])
    y = np.concatenate([data[b].y[fit[b]] for b in BANKS])
    Xt = test[list(out[HUB].model.columns)].to_numpy(dtype=float)
    central = auc(yt, score(opts.spec, *fit_central(X, y, opts), Xt))
    assert abs(fed - central) < 0.01, (fed, central)
    for b in BANKS:
        alone = auc(
            yt, score(opts.spec, *fit_central(data[b].X[fit[b]], data[b].y[fit[b]], opts), Xt)
        )
        assert fed > alone, (b, fed, alone)


def test_two_banks_need_a_separate_aggregator_for_secure_aggregation() -> None:
    data = bank_data(small_banks(2, 100))
    with pytest.raises(ConfigError, match="at least two distinct banks besides the aggregator"):
        federate(data, FedAvgOptions(rounds=1), aggregator="bank0")
    out = federate(data, FedAvgOptions(rounds=1))  # with a hub: fine
    assert out[HUB].model.history[0]["banks"] == 2


def test_banks_with_different_columns_or_kinds_stop_naming_bank_and_column() -> None:
    frames = small_banks(3, 100)
    frames["bank1"] = frames["bank1"].drop(columns=["c"])
    with pytest.raises(ConfigError, match="bank 'bank1' lacks column 'c' that 'bank0' has"):
        federate(bank_data(frames), FedAvgOptions(rounds=1))
    frames = small_banks(3, 100)
    frames["bank2"]["extra"] = 1.0
    with pytest.raises(ConfigError, match="bank 'bank2' has column 'extra' that 'bank0' lacks"):
        federate(bank_data(frames), FedAvgOptions(rounds=1))
    frames = small_banks(3, 100)
    frames["bank2"]["a"] = frames["bank2"]["a"].round().astype(int)
    with pytest.raises(ConfigError, match="column 'a' is integer at bank 'bank2' but float"):
        federate(bank_data(frames), FedAvgOptions(rounds=1))


def test_bad_rows_at_one_bank_are_named() -> None:
    frames = small_banks(2, 50)
    bad = frames["bank1"].copy()
    bad.loc[7, "b"] = np.nan
    with pytest.raises(
        ConfigError, match=r"parties\.bank1\.data: column 'b' has 1 missing .* row 8"
    ):
        BankData.from_frame(bad, "y", id_column="id", who="bank1")
    none = frames["bank1"].assign(y=0)
    with pytest.raises(ConfigError, match=r"parties\.bank1\.label 'y': has a single class"):
        BankData.from_frame(none, "y", id_column="id", who="bank1")
    text = frames["bank1"].assign(c="x")
    with pytest.raises(ConfigError, match="column 'c' is not numeric"):
        BankData.from_frame(text, "y", id_column="id", who="bank1")
    # One positive row, held out for validation, leaves training without positives.
    few = frames["bank1"].assign(y=0)
    few.loc[0, "y"] = 1
    data = bank_data({"bank0": frames["bank0"]}) | {
        "bank1": BankData.from_frame(few, "y", id_column="id", who="bank1")
    }
    with pytest.raises(ConfigError, match=r"parties\.bank1\.label: its training rows"):
        federate(data, FedAvgOptions(rounds=1, validation_share=0.9))


def test_early_stopping_keeps_the_best_pooled_validation_model() -> None:
    rng = np.random.default_rng(5)
    frames = small_banks(3, 200, seed=5)
    for f in frames.values():  # labels unrelated to the features: training overfits
        f["y"] = rng.integers(0, 2, len(f))
    data = bank_data(frames)
    opts = FedAvgOptions(
        model="mlp", hidden=(32,), rounds=40, learning_rate=0.5, batch_size=16, early_stopping=2
    )
    out = federate(data, opts)
    model = out[HUB].model
    assert model.stopped_by == "early_stopping"
    losses = [h["valid_loss_before"] for h in model.history]
    best = int(np.argmin(losses))
    assert len(losses) == best + 1 + opts.early_stopping < 40
    # The final model is the best one: its pooled validation loss is the minimum seen.
    vs = vw = 0.0
    for b, d in data.items():
        local = _Local(d, opts, b)
        local.set_scaling(model.mean, model.scale)
        s, w = local.contribution(model.params, train=False, n_banks=3)
        vs, vw = vs + s, vw + w
    assert abs(vs / vw - losses[best]) < 1e-6


def test_fedprox_keeps_local_models_near_the_global_one() -> None:
    d = bank_data(small_banks(1, 300))["bank0"]
    opts = FedAvgOptions(local_epochs=5, learning_rate=0.5)
    anchor = np.zeros(4)
    rows = (d.X, d.y, row_weights(d.y, opts))
    free, _ = local_train(opts.spec, anchor, rows, opts, np.random.default_rng(0), anchor=anchor)
    prox_opts = dataclasses.replace(opts, fedprox_mu=1.0)
    rng = np.random.default_rng(0)
    prox, _ = local_train(opts.spec, anchor, rows, prox_opts, rng, anchor=anchor)
    assert np.linalg.norm(prox) < 0.7 * np.linalg.norm(free)


def _round_one_updates(
    data: dict[str, BankData], opts: FedAvgOptions, model: GlobalModel
) -> dict[str, object]:
    """What each bank contributes in round 1 (its rows, the model's pooled scaling)."""
    out: dict[str, object] = {}
    for b, d in data.items():
        local = _Local(d.reorder(model.columns), opts, b)
        local.set_scaling(model.mean, model.scale)
        theta0 = opts.spec.init(len(model.columns), opts.seed)
        out[f"round-1 update {b}"] = local.contribution(theta0, train=True, n_banks=len(data))
    return out


def test_no_row_label_or_update_crosses_the_wire() -> None:
    frames = small_banks(3, 300, seed=9)
    data = bank_data(frames)
    opts = FedAvgOptions(rounds=2, model="mlp", hidden=(4,))
    rec = Recorder()
    model = federate(data, opts, tap=rec)[HUB].model
    secrets_: dict[str, object] = {}
    for b, f in frames.items():
        secrets_[f"labels {b}"] = f["y"].to_numpy()
        secrets_[f"ids {b}"] = list(f["id"])
        for c in ("a", "b", "c"):
            secrets_[f"feature {c} {b}"] = f[c].to_numpy()
        secrets_[f"column sums {b}"] = _Local(data[b], opts, b).stats()
    assert_no_leak(rec.frames, secrets_ | _round_one_updates(data, opts, model))
    # The same check sees each bank's update when it is sent in the clear.
    rec = Recorder()
    plain = dataclasses.replace(opts, secure_aggregation=False)
    model = federate(data, plain, tap=rec)[HUB].model
    for b, update in _round_one_updates(data, plain, model).items():
        with pytest.raises(AssertionError, match=b):
            assert_no_leak(rec.frames, {b: update})


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="rounds"):
        FedAvgOptions(rounds=0)
    with pytest.raises(ConfigError, match="early_stopping: needs held-out rows"):
        FedAvgOptions(early_stopping=2, validation_share=0.0)
    with pytest.raises(ConfigError, match="lerning_rate: unknown parameter"):
        FedAvgOptions.from_mapping({"lerning_rate": 0.1})
    with pytest.raises(ConfigError, match=r"dp\.clip"):
        FedAvgOptions.from_mapping({"dp": {"clip": -1}, "standardize": False})
    o = FedAvgOptions.from_mapping(
        {"model": "mlp", "hidden": [8, 4], "class_weight": {"0": 1, "1": 5}}
    )
    assert o.hidden == (8, 4) and o.class_weight == {0: 1.0, 1: 5.0}


def test_class_weights_raise_scores_of_rare_positives() -> None:
    frames = small_banks(3, 300, seed=3)
    rng = np.random.default_rng(3)
    for b, f in frames.items():  # make positives rare (about 5 %)
        frames[b] = f[(f["y"] == 0) | (rng.random(len(f)) < 0.08)]
    data = bank_data(frames)
    opts = FedAvgOptions(rounds=20, learning_rate=0.5, batch_size=16)
    plain = federate(data, opts)[HUB].model
    weighted = federate(data, dataclasses.replace(opts, class_weight="balanced"))[HUB].model
    X = pd.concat(frames.values())
    y = X["y"].to_numpy()
    assert y.mean() < 0.1
    # At a logistic model's optimum the (weighted) mean score equals the (weighted) mean
    # label: the base rate without weights, one half with balanced weights (which SGD
    # approaches from below).
    p, pw = plain.score_frame(X), weighted.score_frame(X)
    w = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    assert abs(p.mean() - y.mean()) < 0.02
    assert (w * p).sum() / w.sum() < 0.25 < (w * pw).sum() / w.sum() < 0.55


class _GoneAtReveal(Exception):
    pass


class _SilentAtReveal:
    """A bank's session (and its subs) that goes silent instead of revealing its shares."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def send(self, to: str, tag: str, value: Any) -> None:
        if tag == SecAggTag.REVEAL:
            raise _GoneAtReveal
        self._inner.send(to, tag, value)

    def sub(self, name: str) -> _SilentAtReveal:
        return _SilentAtReveal(self._inner.sub(name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize("standardize", [True, False], ids=["scaling", "model"])
def test_a_sum_aborted_after_the_reveals_is_explained_to_the_waiting_banks(
    standardize: bool,
) -> None:
    """Secure aggregation sends no RESULT in FedAvg: the aggregator's next message (the
    scaling, or the next model) carries why the sum aborted."""
    data = bank_data(small_banks(5, 120, seed=4))
    opts = FedAvgOptions(rounds=2, standardize=standardize, phase_timeout=1.0)
    silent = {"bank0", "bank2", "bank4"}  # 3 of 5 banks; at most 2 may drop
    out: dict[str, object] = {}

    def bank(name: str) -> Callable[[Session], None]:
        def run(s: Session) -> None:
            sess: Any = _SilentAtReveal(s) if name in silent else s
            try:
                out[name] = train_client(sess, data[name], opts)
            except (_GoneAtReveal, RoundAborted) as e:
                out[name] = e

        return run

    def hub(s: Session) -> None:
        try:
            out[HUB] = train_aggregator(s, opts, banks=list(data))
        except RoundAborted as e:
            out[HUB] = e

    t0 = time.monotonic()
    run_parties(
        {HUB: hub, **{b: bank(b) for b in data}},
        parties=[HUB, *data],
        roles={AGGREGATOR: HUB},
        timeout=30,
    )
    assert time.monotonic() - t0 < 15  # nobody waited for the 30 s timeout
    assert isinstance(out[HUB], RoundAborted)
    assert "3 of 5 banks dropped" in str(out[HUB]) and "reveal" in str(out[HUB])
    for b in silent:
        assert isinstance(out[b], _GoneAtReveal)
    for b in ("bank1", "bank3"):
        assert isinstance(out[b], RoundAborted) and str(out[b]) == str(out[HUB])
