"""Shared fixtures for the credit-risk tests: real data subsets and HE keys."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

DATA = Path("/work/shared/data")


def _backend() -> Any:
    if importlib.util.find_spec("veil.crypto.paillier") is not None:
        from veil.crypto import paillier

        return paillier
    from tests.ml import phe_backend

    return phe_backend


@pytest.fixture(scope="session")
def he() -> Any:
    """The Paillier module (``veil.crypto.paillier`` once merged)."""
    return _backend()


@pytest.fixture(scope="session")
def keys(he: Any) -> tuple[Any, Any]:
    """A 1024-bit test keypair (fast; production uses 2048+)."""
    gen = he.generate_keypair
    try:
        from veil.crypto.policy import TEST_POLICY  # type: ignore[import-not-found]

        return gen(1024, policy=TEST_POLICY)  # type: ignore[no-any-return]
    except ImportError:
        return gen(1024)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def credit() -> tuple[pd.DataFrame, pd.DataFrame]:
    """default_credit vertical split, first 1500 aligned rows (guest has y)."""
    g = pd.read_csv(DATA / "default_credit_hetero_guest.csv", nrows=1500)
    h = pd.read_csv(DATA / "default_credit_hetero_host.csv", nrows=1500)
    assert (g["id"].to_numpy() == h["id"].to_numpy()).all()
    return g, h


@pytest.fixture(scope="session")
def uci() -> pd.DataFrame:
    """Raw UCI credit card table in real units (30,000 rows)."""
    return pd.read_csv(DATA / "UCI_Credit_Card.csv")
