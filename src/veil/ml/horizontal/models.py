"""The models a federation trains: logistic regression and a small MLP, in numpy.

Parameters live in one flat float64 vector (what FedAvg averages and secure
aggregation sums). Layers are ``[d, *hidden, 1]``: no hidden layer is logistic
regression; each hidden layer is ReLU; the output is a sigmoid. Losses: weighted
binary cross-entropy, or the focal loss of Lin et al., "Focal Loss for Dense Object
Detection" (ICCV 2017), ``-(1 - p_t)^gamma log p_t``, which down-weights easy negatives
when positives are rare (laundering among ordinary accounts).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
MODELS = ("logistic", "mlp")
_EPS = 1e-12


@dataclass(frozen=True)
class ModelSpec:
    """Which model: ``logistic`` or ``mlp`` (with ``hidden`` layer widths)."""

    kind: str = "logistic"
    hidden: tuple[int, ...] = (16,)

    def __post_init__(self) -> None:
        if self.kind not in MODELS:
            raise ConfigError("model", f"unknown model '{self.kind}'", f"use one of {MODELS}")
        if self.kind == "mlp" and (
            not self.hidden or any(isinstance(h, bool) or int(h) < 1 for h in self.hidden)
        ):
            raise ConfigError("hidden", f"{self.hidden} is no list of layer widths", "e.g. [16]")

    def layers(self, n_features: int) -> list[int]:
        """Layer widths from input to output."""
        hidden = list(self.hidden) if self.kind == "mlp" else []
        return [n_features, *hidden, 1]

    def n_params(self, n_features: int) -> int:
        """Length of the flat parameter vector."""
        w = self.layers(n_features)
        return sum((a + 1) * b for a, b in itertools.pairwise(w))

    def init(self, n_features: int, seed: int) -> FloatArray:
        """Starting parameters: zeros for logistic regression, He-normal weights for an
        MLP (the same seed at every bank gives the same start)."""
        if self.kind == "logistic":
            return np.zeros(self.n_params(n_features))
        rng = np.random.default_rng(seed)
        parts = []
        w = self.layers(n_features)
        for a, b in itertools.pairwise(w):
            parts += [rng.normal(scale=np.sqrt(2.0 / a), size=a * b), np.zeros(b)]
        return np.concatenate(parts)


def _unpack(spec: ModelSpec, theta: FloatArray, d: int) -> list[tuple[FloatArray, FloatArray]]:
    out, pos = [], 0
    w = spec.layers(d)
    for a, b in itertools.pairwise(w):
        W = theta[pos : pos + a * b].reshape(a, b)
        pos += a * b
        out.append((W, theta[pos : pos + b]))
        pos += b
    if pos != theta.size:
        raise ConfigError("params", f"{theta.size} parameters, the model has {pos}")
    return out


def _forward(
    spec: ModelSpec, theta: FloatArray, X: FloatArray
) -> tuple[FloatArray, list[FloatArray]]:
    acts = [X]
    layers = _unpack(spec, theta, X.shape[1])
    h = X
    for i, (W, b) in enumerate(layers):
        z = h @ W + b
        h = np.maximum(z, 0.0) if i < len(layers) - 1 else z
        acts.append(h)
    return acts[-1][:, 0], acts


def logits(spec: ModelSpec, theta: FloatArray, X: FloatArray) -> FloatArray:
    """The model's log-odds for each row of ``X``."""
    return _forward(spec, theta, X)[0]


def predict(spec: ModelSpec, theta: FloatArray, X: FloatArray) -> FloatArray:
    """Probabilities of label 1."""
    z = logits(spec, theta, X)
    out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
    return out


def loss_and_grad(
    spec: ModelSpec,
    theta: FloatArray,
    X: FloatArray,
    y: FloatArray,
    w: FloatArray,
    *,
    focal_gamma: float = 0.0,
) -> tuple[float, FloatArray]:
    """Weighted mean loss (cross-entropy, or focal with ``focal_gamma`` > 0) over the
    rows and its gradient with respect to ``theta``."""
    z, acts = _forward(spec, theta, X)
    p = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
    total_w = float(w.sum()) or 1.0
    if focal_gamma > 0:
        g = focal_gamma
        pt = np.where(y > 0.5, p, 1.0 - p)
        log_pt = np.log(np.clip(pt, _EPS, 1.0))
        loss_rows = -((1.0 - pt) ** g) * log_pt
        # d/dz of -(1-pt)^g log pt, where dpt/dz = pt(1-pt) for y=1 and -pt(1-pt) for y=0
        d = g * (1.0 - pt) ** g * pt * log_pt - (1.0 - pt) ** (g + 1)
        dz = d * np.where(y > 0.5, 1.0, -1.0)
    else:
        loss_rows = -(y * np.log(np.clip(p, _EPS, 1.0)) + (1 - y) * np.log(np.clip(1 - p, _EPS, 1)))
        dz = p - y
    loss = float((w * loss_rows).sum() / total_w)
    delta = ((w * dz) / total_w)[:, None]
    layers = _unpack(spec, theta, X.shape[1])
    grads: list[FloatArray] = []
    for i in range(len(layers) - 1, -1, -1):
        W, _ = layers[i]
        h_in = acts[i]
        grads += [np.asarray(delta.sum(axis=0)), (h_in.T @ delta).ravel()]
        if i > 0:
            delta = (delta @ W.T) * (acts[i] > 0)
    return loss, np.concatenate(grads[::-1])
