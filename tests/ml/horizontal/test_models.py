"""The numpy models: gradients match finite differences, options are checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from veil.errors import ConfigError
from veil.ml.horizontal import GlobalModel, load_model, save_model
from veil.ml.horizontal.models import ModelSpec, loss_and_grad, predict


@pytest.mark.parametrize("spec", [ModelSpec("logistic"), ModelSpec("mlp", (5, 3))])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_gradient_matches_finite_differences(spec: ModelSpec, gamma: float) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    y = (rng.random(40) < 0.3).astype(float)
    w = rng.uniform(0.5, 2.0, size=40)
    theta = spec.init(4, seed=1) + rng.normal(scale=0.3, size=spec.n_params(4))
    _, g = loss_and_grad(spec, theta, X, y, w, focal_gamma=gamma)
    eps = 1e-6
    num = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = eps
        hi = loss_and_grad(spec, theta + e, X, y, w, focal_gamma=gamma)[0]
        lo = loss_and_grad(spec, theta - e, X, y, w, focal_gamma=gamma)[0]
        num[i] = (hi - lo) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-7)


def test_focal_loss_down_weights_confident_rows() -> None:
    spec = ModelSpec("logistic")
    X = np.array([[3.0], [0.1]])
    y = np.array([1.0, 1.0])
    theta = np.array([1.0, 0.0])
    easy_ce, _ = loss_and_grad(spec, theta, X[:1], y[:1], np.ones(1))
    easy_fl, _ = loss_and_grad(spec, theta, X[:1], y[:1], np.ones(1), focal_gamma=2.0)
    hard_ce, _ = loss_and_grad(spec, theta, X[1:], y[1:], np.ones(1))
    hard_fl, _ = loss_and_grad(spec, theta, X[1:], y[1:], np.ones(1), focal_gamma=2.0)
    assert easy_fl / easy_ce < 0.01 < hard_fl / hard_ce


def test_shapes_and_probabilities() -> None:
    spec = ModelSpec("mlp", (8,))
    assert spec.n_params(5) == (5 + 1) * 8 + (8 + 1) * 1
    p = predict(spec, spec.init(5, 0), np.random.default_rng(0).normal(size=(10, 5)))
    assert p.shape == (10,) and ((p > 0) & (p < 1)).all()
    assert ModelSpec("logistic").n_params(5) == 6


def test_bad_model_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown model 'tree'"):
        ModelSpec("tree")
    with pytest.raises(ConfigError, match="hidden"):
        ModelSpec("mlp", ())


def test_global_model_saves_loads_and_checks_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    spec = ModelSpec("mlp", (3,))
    model = GlobalModel(
        spec,
        ("a", "b"),
        ("float", "integer"),
        np.array([0.5, 1.0]),
        np.array([2.0, 3.0]),
        spec.init(2, 0) + rng.normal(size=spec.n_params(2)),
        ({"round": 1, "banks": 3},),
    )
    save_model(model, tmp_path / "model.json")
    back = load_model(tmp_path / "model.json")
    frame = pd.DataFrame({"b": [1, 2, 3], "a": [0.1, 0.2, 0.3]})
    np.testing.assert_array_equal(back.score_frame(frame), model.score_frame(frame))
    assert back.history == model.history and back.spec == spec
    with pytest.raises(ConfigError, match="test: column 'b' is float, the model's is integer"):
        model.score_frame(frame.assign(b=[1.5, 2.0, 3.0]), "test")
    with pytest.raises(ConfigError, match="test: column 'a' is missing"):
        model.score_frame(frame.drop(columns=["a"]), "test")
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ConfigError, match="is not a veil-fedavg-1 model"):
        load_model(tmp_path / "bad.json")
