"""The hetero_lr and predict job steps, run on each party's StepContext in threads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.jobs.conftest import run_step
from tests.paths import DATA
from veil.errors import ConfigError
from veil.jobs.context import StepState
from veil.jobs.registry import get
from veil.jobs.spec import JobSpec, PartySpec
from veil.jobs.validate import step_warnings
from veil.ml.lr import PartyModel, load_model
from veil.policy import TEST_POLICY

PARAMS = {"epochs": 2, "batch_size": 100, "seed": 3, "he": "ou"}


class _Split:
    def __init__(self, n: int) -> None:
        self.test_idx = np.arange(0, n, 3)
        self.train_idx = np.setdiff1d(np.arange(n), self.test_idx)


def _job(tmp: Path) -> JobSpec:
    parties = (
        PartySpec("bank", tmp / "bank.csv", "id", "y"),
        PartySpec("bureau", tmp / "bureau.csv", "id", None),
    )
    return JobSpec("lr-test", tmp / "job.yaml", parties, ())


def _run(step: str, params: dict[str, Any], tmp: Path, states: dict[str, StepState]) -> Any:
    frames = {
        "bank": pd.read_csv(DATA / "default_credit_hetero_guest.csv", nrows=300),
        "bureau": pd.read_csv(DATA / "default_credit_hetero_host.csv", nrows=300),
    }
    norm = get(step).validate(params, _job(tmp), f"steps[0].{step}")
    return run_step(step, norm, frames, tmp, states)


@pytest.mark.parametrize("protocol", [None, "he"], ids=["default-ss", "he"])
def test_hetero_lr_then_predict_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str | None
) -> None:
    # Steps always run under DEFAULT_POLICY; short test keys need the test policy here.
    monkeypatch.setattr("veil.jobs.steps.hetero_lr.DEFAULT_POLICY", TEST_POLICY)
    states = {p: StepState(split=_Split(300)) for p in ("bank", "bureau")}  # type: ignore[arg-type]
    params = {**PARAMS, "key_bits": 1024, **({"protocol": protocol} if protocol else {})}
    out = _run("hetero_lr", params, tmp_path, states)
    assert out["bank"]["epochs_run"] == 2
    if protocol is None:  # the default: secret sharing, no third party (HE triples)
        assert out["bank"]["protocol"] == "ss" and out["bank"]["triples"] == "ou"
    else:
        assert out["bank"]["protocol"] == "he" and "triples" not in out["bank"]
    assert "warning" not in out["bank"]
    pred = pd.read_csv(tmp_path / "bank" / "predictions.csv")
    assert list(pred.columns) == ["id", "score", "label", "set"]
    assert (pred["set"] == "test").sum() == 100 and len(pred) == 300
    assert not (tmp_path / "bureau" / "predictions.csv").exists()
    for p in ("bank", "bureau"):
        assert isinstance(states[p].model, PartyModel)
        assert load_model(tmp_path / p / "model.json").model_id == states[p].model.model_id
    # A new batch scored with the saved files, as a later job would.
    fresh = {"bank": StepState(), "bureau": StepState()}
    _run("predict", {"model": str(tmp_path / "{party}" / "model.json")}, tmp_path, fresh)
    again = pd.read_csv(tmp_path / "bank" / "predictions.csv")
    np.testing.assert_allclose(again["score"], pred["score"], atol=1e-8)


@pytest.mark.parametrize("protocol", ["auto", "he"])
def test_early_stopping_in_a_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    """``patience`` holds out every 2nd training row; the label holder reports the best
    validation loss, a number between 0 and log 2 + a little for a weak model (under HE
    with ``he``, on shares with the default)."""
    monkeypatch.setattr("veil.jobs.steps.hetero_lr.DEFAULT_POLICY", TEST_POLICY)
    states = {p: StepState(split=_Split(300)) for p in ("bank", "bureau")}  # type: ignore[arg-type]
    params = {**PARAMS, "key_bits": 1024, "patience": 1, "validation_every": 2, "epochs": 3}
    out = _run("hetero_lr", {**params, "protocol": protocol}, tmp_path, states)
    assert out["bank"]["protocol"] == ("ss" if protocol == "auto" else "he")
    assert 0.3 < out["bank"]["best_valid_loss"] < 0.75
    assert "best_valid_loss" not in out["bureau"]


def test_auto_falls_back_to_he_only_for_l1_and_says_what_that_reveals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, field = _job(tmp_path), "steps[0].hetero_lr"
    v = get("hetero_lr").validate
    assert v({}, job, field)["protocol"] == "ss"  # the default
    assert v({"protocol": "auto", "class_weight": "balanced"}, job, field)["protocol"] == "ss"
    assert v({"protocol": "he"}, job, field).get("protocol") == "he"
    with pytest.raises(ConfigError, match=r"hetero_lr\.sigmoid: unknown parameter"):
        v({"protocol": "he", "sigmoid": "linear"}, job, field)  # an ss option
    assert "fallback" not in v({"protocol": "he", "penalty": "l1"}, job, field)
    norm = v({"penalty": "l1"}, job, field)
    assert norm.get("protocol", "auto") == "auto" and "l1" in norm["fallback"]
    monkeypatch.setattr("veil.jobs.steps.hetero_lr.DEFAULT_POLICY", TEST_POLICY)
    states = {p: StepState(split=_Split(300)) for p in ("bank", "bureau")}  # type: ignore[arg-type]
    out = _run("hetero_lr", {**PARAMS, "key_bits": 1024, "penalty": "l1"}, tmp_path, states)
    for party in ("bank", "bureau"):
        warning = out[party]["warning"]
        assert "each party learns its own batch gradients" in warning and "l1" in warning
        assert step_warnings("hetero_lr", out[party]) == [warning]  # printed and reported


def test_step_parameters_are_checked(tmp_path: Path) -> None:
    job = _job(tmp_path)
    with pytest.raises(ConfigError, match=r"steps\[0\]\.hetero_lr\.epochs"):
        get("hetero_lr").validate({"epochs": 0}, job, "steps[0].hetero_lr")
    with pytest.raises(ConfigError, match=r"steps\[0\]\.hetero_lr\.learnig_rate"):
        get("hetero_lr").validate({"learnig_rate": 0.1}, job, "steps[0].hetero_lr")
    with pytest.raises(ConfigError, match=r"steps\[0\]\.hetero_lr\.key_bits.*2048"):
        get("hetero_lr").validate({"key_bits": 1024}, job, "steps[0].hetero_lr")
    with pytest.raises(ConfigError, match=r"steps\[0\]\.hetero_lr\.batch_size.*64"):
        get("hetero_lr").validate({"batch_size": 8}, job, "steps[0].hetero_lr")
    with pytest.raises(ConfigError, match=r"steps\[0\]\.hetero_lr\.he"):
        get("hetero_lr").validate({"he": "rsa"}, job, "steps[0].hetero_lr")
    norm = get("hetero_lr").validate({"he": "paillier"}, job, "steps[0].hetero_lr")
    assert norm["he"] == "paillier"
    with pytest.raises(ConfigError, match="no model"):
        _run("predict", {}, tmp_path, {"bank": StepState(), "bureau": StepState()})
