"""Each party's data block and its own part of a trained vertical LR model.

A party's model file holds only what that party owns: its feature names,
coefficients, scaling and (label holder only) the intercept. Files are JSON,
never pickle, and carry the ``model_id`` agreed at training time so that a
joint prediction refuses to mix parts of different trainings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from veil.errors import ConfigError
from veil.fileio import write_atomic, write_csv

MODEL_FORMAT = "veil.hetero_lr/1"
"""The ``format`` of a model file written by :func:`save_model`."""

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PartyData:
    """One party's aligned rows: ids, its feature columns, and labels at the label holder."""

    ids: np.ndarray
    X: np.ndarray
    feature_names: tuple[str, ...]
    y: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.X):
            raise ConfigError("data.ids", f"{len(self.ids)} ids for {len(self.X)} rows")
        if self.y is not None and len(self.y) != len(self.X):
            raise ConfigError("data.label", f"{len(self.y)} labels for {len(self.X)} rows")

    @property
    def n_rows(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray) -> PartyData:
        """The subset of rows ``rows`` (e.g. a train or test split)."""
        y = None if self.y is None else self.y[rows]
        return PartyData(self.ids[rows], self.X[rows], self.feature_names, y)

    def ids_digest(self) -> str:
        """SHA-256 of the id column, to check that parties' rows are aligned."""
        h = hashlib.sha256()
        for i in self.ids:
            h.update(str(i).encode())
            h.update(b"\n")
        return h.hexdigest()

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        id_column: str = "id",
        label: str | None = None,
        features: Sequence[str] | None = None,
    ) -> PartyData:
        """Split a table into ids, features and (if ``label``) the label column."""
        if id_column not in df.columns:
            raise ConfigError("data.id_column", f"no column '{id_column}'", "name the id column")
        y = None
        if label is not None:
            if label not in df.columns:
                raise ConfigError(
                    "data.label", f"label column '{label}' is missing", "name the label column"
                )
            y = pd.to_numeric(df[label], errors="coerce").to_numpy(dtype=np.float64)
        names = (
            list(features)
            if features is not None
            else [c for c in df.columns if c not in (id_column, label)]
        )
        missing = [c for c in names if c not in df.columns]
        if missing:
            raise ConfigError("data.features", f"columns {missing} are missing")
        X = df[names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        return cls(df[id_column].to_numpy(), X, tuple(str(n) for n in names), y)


@dataclass(frozen=True)
class PartyModel:
    """One party's part of a trained model."""

    model_id: str
    role: str
    party: str
    feature_names: tuple[str, ...]
    coef: np.ndarray
    intercept: float | None = None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    clip: float = 0.0
    parties: tuple[str, ...] = ()
    options: Mapping[str, object] = field(default_factory=dict)

    def partial_score(self, X: npt.ArrayLike) -> FloatArray:
        """This party's share ``X_p w_p`` (+ intercept) of the linear score."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ConfigError(
                "data.features",
                f"model expects {len(self.feature_names)} columns, got shape {X.shape}",
                f"supply columns {list(self.feature_names)}",
            )
        if self.mean is not None and self.std is not None:
            X = (X - self.mean) / self.std
        if self.clip > 0:
            X = np.clip(X, -self.clip, self.clip)
        z = np.asarray(X @ self.coef, dtype=np.float64)
        return z + self.intercept if self.intercept is not None else z

    def to_json(self) -> dict[str, object]:
        """The model file's content (plain JSON)."""

        def arr(a: np.ndarray | None) -> list[float] | None:
            return None if a is None else [float(v) for v in a]

        return {
            "format": MODEL_FORMAT,
            "model_id": self.model_id,
            "role": self.role,
            "party": self.party,
            "parties": list(self.parties),
            "feature_names": list(self.feature_names),
            "coef": arr(self.coef),
            "intercept": self.intercept,
            "scaling": None
            if self.mean is None
            else {"mean": arr(self.mean), "std": arr(self.std)},
            "clip": self.clip,
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, d: object, where: str = "model") -> PartyModel:
        """A model from :meth:`to_json`'s output, or a :class:`ConfigError` naming ``where``."""
        if not isinstance(d, Mapping) or d.get("format") != MODEL_FORMAT:
            got = d.get("format") if isinstance(d, Mapping) else type(d).__name__
            raise ConfigError(
                f"{where}.format",
                f"not a vertical LR model file (format {got!r})",
                f"use a file written by hetero_lr ({MODEL_FORMAT})",
            )
        try:
            names = tuple(str(n) for n in _list(d["feature_names"]))
            coef = np.asarray(_list(d["coef"]), dtype=np.float64)
            sc = d.get("scaling")
            mean = std = None
            if sc is not None:
                if not isinstance(sc, Mapping):
                    raise TypeError("scaling is not a mapping")
                mean = np.asarray(_list(sc["mean"]), dtype=np.float64)
                std = np.asarray(_list(sc["std"]), dtype=np.float64)
            icpt = d.get("intercept")
            opts = d.get("options") or {}
            if not isinstance(opts, Mapping):
                raise TypeError("options is not a mapping")
            model = cls(
                model_id=str(d["model_id"]),
                role=str(d["role"]),
                party=str(d["party"]),
                feature_names=names,
                coef=coef,
                intercept=None if icpt is None else _number(icpt),
                mean=mean,
                std=std,
                clip=_number(d.get("clip") or 0.0),
                parties=tuple(str(p) for p in _list(d.get("parties", []))),
                options={str(k): v for k, v in opts.items()},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(where, f"malformed model file ({e})", "retrain or restore it") from e
        if len(coef) != len(names) or any(
            a is not None and len(a) != len(names) for a in (mean, std)
        ):
            raise ConfigError(where, "coefficients and feature names differ in length")
        return model


def _list(v: object) -> list[object]:
    if not isinstance(v, list):
        raise TypeError(f"expected a list, got {type(v).__name__}")
    return v


def _number(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"expected a number, got {type(v).__name__}")
    return float(v)


def save_model(model: PartyModel, path: str | Path) -> Path:
    """Write ``model`` as JSON (atomically) and return the path."""
    p = Path(path)
    write_atomic(p, json.dumps(model.to_json(), indent=1))
    return p


def load_model(path: str | Path) -> PartyModel:
    """Read a model file written by :func:`save_model`."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError("model", f"no model file at {p}", "train first or fix the path") from None
    except json.JSONDecodeError as e:
        raise ConfigError("model", f"{p} is not JSON ({e})") from None
    return PartyModel.from_json(data, where=f"model[{p.name}]")


def write_predictions(
    path: str | Path,
    ids: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray | None = None,
    sets: np.ndarray | Sequence[str] | None = None,
) -> Path:
    """Atomically write ``id, score[, label][, set]`` rows to ``path`` (CSV)."""
    df = pd.DataFrame({"id": ids, "score": scores})
    if labels is not None:
        df["label"] = np.asarray(labels).astype(int)
    if sets is not None:
        df["set"] = list(sets)
    p = Path(path)
    write_csv(df, p, float_format="%.8g")
    return p
