"""Binary labels and per-row class weights, shared by every model (one definition).

Binning, vertical LR and SecureBoost all take a 0/1 label column held by one party;
:func:`check_labels` refuses anything else with an error naming the column, and
:func:`sample_weights` turns a ``class_weight`` setting into per-row weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError

__all__ = ["ClassWeight", "check_class_weight", "check_labels", "sample_weights"]

ClassWeight = str | Mapping[int, float] | Sequence[float] | None
"""``None`` (all ones), ``"balanced"`` (scikit-learn's rule), ``{0: w0, 1: w1}`` or ``(w0, w1)``."""


def check_labels(y: npt.ArrayLike, field: str = "label") -> npt.NDArray[np.int64]:
    """Labels as 0/1 int64, or a :class:`ConfigError` naming ``field``.

    Refuses: not one dimension, no rows, non-numeric values, missing values, values
    other than 0 and 1, and a single class (a model needs both)."""
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.size == 0:
        raise ConfigError(field, "is empty or not one column", "pass one 0/1 label per row")
    try:
        f = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ConfigError(
            field, "is not numeric", "encode it as 0 (good) / 1 (bad, event)"
        ) from None
    if np.isnan(f).any():
        raise ConfigError(field, "has missing values", "drop unlabelled rows")
    values = set(np.unique(f).tolist())
    if not values <= {0.0, 1.0}:
        shown = sorted(values)[:5]
        raise ConfigError(
            field, f"is not binary (values {shown})", "map it to 0 (good) / 1 (bad, event) first"
        )
    if len(values) < 2:
        raise ConfigError(field, "has a single class", "both 0 and 1 are needed")
    return f.astype(np.int64)


def check_class_weight(cw: object, field: str = "class_weight") -> str | dict[int, float] | None:
    """A job file's ``class_weight`` checked: ``None``, ``"balanced"`` or ``{0: w0, 1: w1}``
    with positive weights (returned as floats); anything else is a :class:`ConfigError`."""
    if cw is None or cw == "balanced":
        return cw
    if not isinstance(cw, Mapping) or set(cw) != {0, 1}:
        raise ConfigError(field, f"got {cw!r}", "use null, 'balanced' or a mapping {0: w0, 1: w1}")
    if not all(isinstance(v, int | float) and v > 0 for v in cw.values()):
        raise ConfigError(field, "weights must be > 0")
    return {0: float(cw[0]), 1: float(cw[1])}


def sample_weights(
    y: npt.ArrayLike, class_weight: ClassWeight, field: str = "class_weight"
) -> npt.NDArray[np.float64]:
    """Per-row weights for 0/1 labels ``y`` from ``class_weight`` (see :data:`ClassWeight`)."""
    lab = np.asarray(y, dtype=np.float64)
    if class_weight is None:
        return np.ones(lab.shape[0])
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ConfigError(
                field, f"unknown setting '{class_weight}'", "use 'balanced' or {0: w0, 1: w1}"
            )
        n1 = float(lab.sum())
        n0 = float(lab.shape[0] - n1)
        if n0 == 0 or n1 == 0:
            raise ConfigError(field, "'balanced' needs both classes", "check the label column")
        w0, w1 = lab.shape[0] / (2 * n0), lab.shape[0] / (2 * n1)
    elif isinstance(class_weight, Mapping):
        w0, w1 = float(class_weight[0]), float(class_weight[1])
    else:
        w0, w1 = (float(v) for v in class_weight)
    if not (w0 > 0 and w1 > 0):
        raise ConfigError(field, f"weights must be positive, got ({w0}, {w1})", "use weights > 0")
    out: npt.NDArray[np.float64] = np.where(lab > 0.5, w1, w0).astype(np.float64)
    return out
