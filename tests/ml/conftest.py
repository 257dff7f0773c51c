"""Shared fixtures for the credit-risk tests: real data subsets and HE keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from tests.paths import DATA
from veil.crypto import he
from veil.policy import TEST_POLICY


@pytest.fixture(scope="session")
def keys() -> tuple[Any, Any]:
    """A 1024-bit test keypair (fast; production keys are 2048+ bits)."""
    return he.generate_keypair("paillier", 1024, policy=he.TEST_POLICY)


@dataclass(frozen=True)
class HE:
    """Keyword arguments the role functions take in tests."""

    keys: tuple[Any, Any]
    policy: Any

    def holder(self) -> dict[str, Any]:
        return {"keys": self.keys, "policy": self.policy}

    def partner(self) -> dict[str, Any]:
        return {"policy": self.policy}


@pytest.fixture(scope="session")
def crypto(keys: tuple[Any, Any]) -> HE:
    return HE(keys, TEST_POLICY)


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
