"""Fixtures for the vertical LR tests: small default_credit slices and an HE engine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from veil.ml.lr_model import PartyData

DATA = Path("/work/shared/data")

needs_he = pytest.mark.skipif(
    importlib.util.find_spec("veil.crypto.he") is None,
    reason="the HE engine (veil.crypto.he, branch he) is not on this branch yet",
)


@pytest.fixture(scope="session")
def credit() -> tuple[pd.DataFrame, pd.DataFrame]:
    g = pd.read_csv(DATA / "default_credit_hetero_guest.csv")
    h = pd.read_csv(DATA / "default_credit_hetero_host.csv")
    assert (g["id"].to_numpy() == h["id"].to_numpy()).all()
    return g, h


def blocks(
    g: pd.DataFrame, h: pd.DataFrame, rows: np.ndarray, split3: bool = False
) -> list[PartyData]:
    """Label holder block first, then one or two partner blocks, on ``rows``."""
    lh = PartyData.from_frame(g.iloc[rows].reset_index(drop=True), label="y")
    hh = h.iloc[rows].reset_index(drop=True)
    if not split3:
        return [lh, PartyData.from_frame(hh)]
    cols = [c for c in hh.columns if c != "id"]
    a = PartyData.from_frame(hh, features=cols[:5])
    b = PartyData.from_frame(hh, features=cols[5:])
    return [lh, a, b]
