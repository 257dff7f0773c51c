"""Data fixtures of the vertical LR tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from veil.ml.lr import PartyData

from .common import blocks, load_credit


@pytest.fixture(scope="session")
def lr_credit() -> tuple[pd.DataFrame, pd.DataFrame]:
    return load_credit()


@pytest.fixture(scope="module")
def small(lr_credit: tuple[pd.DataFrame, pd.DataFrame]) -> list[PartyData]:
    """240 aligned rows: the label holder's 13 columns and the partner's 10."""
    g, h = lr_credit
    return blocks(g, h, np.arange(240))
