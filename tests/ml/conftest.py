"""Shared fixtures for the credit-risk tests: real data subsets and HE keys."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

DATA = Path("/work/shared/data")


def _backend() -> Any:
    if importlib.util.find_spec("veil.crypto.he") is not None:
        from veil.crypto import he

        return he
    from tests.ml import phe_backend

    return phe_backend


@pytest.fixture(scope="session")
def he() -> Any:
    """``veil.crypto.he`` (or, before it is merged, a python-paillier stand-in)."""
    return _backend()


@pytest.fixture(scope="session")
def policy(he: Any) -> Any:
    """The HE test key policy (1024-bit keys allowed), or None for the stand-in."""
    return getattr(he, "TEST_POLICY", None)


@pytest.fixture(scope="session")
def keys(he: Any, policy: Any) -> tuple[Any, Any]:
    """A 1024-bit test keypair (fast; production uses 2048+)."""
    return he.generate_keypair("paillier", 1024, policy=policy)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class HE:
    """Keyword arguments the role functions take in tests."""

    backend: Any
    keys: tuple[Any, Any]
    policy: Any

    def holder(self) -> dict[str, Any]:
        return {"keys": self.keys, "policy": self.policy, "backend": self.backend}

    def partner(self) -> dict[str, Any]:
        return {"policy": self.policy, "backend": self.backend}


@pytest.fixture(scope="session")
def crypto(he: Any, keys: tuple[Any, Any], policy: Any) -> HE:
    return HE(he, keys, policy)


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
