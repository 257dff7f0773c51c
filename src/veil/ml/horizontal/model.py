"""The trained global model: what every party of a federation keeps, saves and scores
with (the columns, their pooled scaling, the parameters, the training history and,
with dp, the privacy budget)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from veil.errors import ConfigError
from veil.fileio import write_json
from veil.ml.horizontal.local import feature_matrix, kind_of
from veil.ml.horizontal.models import FloatArray, ModelSpec, predict

FORMAT = "veil-fedavg-1"


@dataclass(frozen=True)
class GlobalModel:
    """A FedAvg model: score a table with :meth:`score_frame`."""

    spec: ModelSpec
    columns: tuple[str, ...]
    kinds: tuple[str, ...]
    mean: FloatArray
    scale: FloatArray
    params: FloatArray
    history: tuple[dict[str, Any], ...] = ()
    stopped_by: str = "rounds"
    dp: dict[str, Any] | None = field(default=None)

    def score(self, X: FloatArray) -> FloatArray:
        """Probabilities of label 1 for raw features in :attr:`columns` order."""
        return predict(self.spec, self.params, (X - self.mean) / self.scale)

    def score_frame(self, frame: pd.DataFrame, who: str = "data") -> FloatArray:
        """Score a table with the model's columns (same kinds), or a ConfigError naming
        ``who`` and the first column that is missing, of another kind, or incomplete."""
        check_columns(frame, self.columns, self.kinds, who)
        X, _ = feature_matrix(frame, self.columns, who)
        return self.score(X)

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "model": self.spec.kind,
            "hidden": list(self.spec.hidden) if self.spec.kind == "mlp" else [],
            "columns": list(self.columns),
            "kinds": list(self.kinds),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "params": self.params.tolist(),
            "stopped_by": self.stopped_by,
            "rounds": list(self.history),
            "dp": self.dp,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GlobalModel:
        if d.get("format") != FORMAT:
            raise ConfigError("model", f"is not a {FORMAT} model file", "train it with fedavg")
        spec = ModelSpec(d["model"], tuple(d["hidden"]) or (16,))
        params = np.asarray(d["params"], dtype=np.float64)
        if params.size != spec.n_params(len(d["columns"])):
            raise ConfigError("model", "parameter count does not fit its columns")
        return cls(
            spec,
            tuple(d["columns"]),
            tuple(d["kinds"]),
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["scale"], dtype=np.float64),
            params,
            tuple(d.get("rounds", ())),
            d.get("stopped_by", "rounds"),
            d.get("dp"),
        )


def check_columns(
    frame: pd.DataFrame, columns: tuple[str, ...], kinds: tuple[str, ...], who: str
) -> None:
    """ConfigError naming ``who`` and the column if ``frame`` lacks one of ``columns`` or
    holds it with another kind."""
    for c, k in zip(columns, kinds, strict=True):
        if c not in frame.columns:
            raise ConfigError(who, f"column '{c}' is missing", "use the training columns")
        got = kind_of(frame[c])
        if got != k:
            raise ConfigError(who, f"column '{c}' is {got}, the model's is {k}", f"make it {k}")


def save_model(model: GlobalModel, path: Path) -> None:
    """Write the model as JSON (atomically)."""
    write_json(model.to_json(), path)


def load_model(path: Path) -> GlobalModel:
    """Read a model written by :func:`save_model`."""
    try:
        return GlobalModel.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            "model", f"cannot read '{path}': {e}", "give a fedavg model.json"
        ) from None
