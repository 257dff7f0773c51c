"""Shared loader: the public vertical splits in ``../shared/data`` (or $VEIL_DATA)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.paths import DATA


def vertical(name: str, test_frac: float = 0.3, seed: int = 0) -> dict[str, np.ndarray]:
    """Guest (label holder) and host features aligned on id, split train/test."""
    g = pd.read_csv(DATA / f"{name}_hetero_guest.csv")
    h = pd.read_csv(DATA / f"{name}_hetero_host.csv")
    h = h.set_index("id").loc[g["id"]]
    xa = g.drop(columns=["id", "y"]).to_numpy(np.float64)
    xb = h.to_numpy(np.float64)
    y = g["y"].to_numpy(np.float64)
    idx = np.random.default_rng(seed).permutation(len(y))
    cut = int(len(y) * (1 - test_frac))
    tr, te = idx[:cut], idx[cut:]
    return {
        "xa": xa[tr],
        "xb": xb[tr],
        "y": y[tr],
        "xa_te": xa[te],
        "xb_te": xb[te],
        "y_te": y[te],
    }
