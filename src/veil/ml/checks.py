"""Checks of the options the learners share (LR over HE, secret-sharing LR): one wording
of each error, a :class:`~veil.errors.ConfigError` naming the job-file field.

``class_weight`` itself is checked by :func:`veil.ml.labels.check_class_weight`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping

from veil.errors import ConfigError

__all__ = ["check_int", "check_number", "class_weight_keys", "options_digest"]


def check_int(field: str, v: object, lo: int, hi: int | None = None, fix: str = "") -> int:
    """An ``int`` (not a bool) in ``lo..hi`` (``hi`` None: unbounded)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        span = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ConfigError(field, f"must be an integer {span}, got {v!r}", fix)
    return v


def check_number(field: str, v: object, *, positive: bool = False) -> float:
    """A finite number (not a bool), ``>= 0`` or, if ``positive``, ``> 0``."""
    want = "a positive number" if positive else "a number >= 0"
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ConfigError(field, f"must be {want}, got {v!r}")
    if v < 0 or (positive and v == 0):
        raise ConfigError(field, f"must be {want}, got {v!r}")
    return float(v)


def class_weight_keys(v: object, field: str) -> object:
    """A job file's ``class_weight`` mapping with int keys (JSON writes them as strings);
    any other value unchanged, for :func:`~veil.ml.labels.check_class_weight` to check."""
    if not isinstance(v, Mapping):
        return v
    try:
        return {int(c): w for c, w in v.items()}
    except (TypeError, ValueError):
        raise ConfigError(field, f"got {v!r}", "use {0: w0, 1: w1}") from None


def options_digest(plain: Mapping[str, object]) -> str:
    """Short hash of options in plain-JSON form, which every party compares before
    training starts."""
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]
