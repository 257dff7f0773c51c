"""Session-cached test keys (1024-bit, allowed only through the explicit test policy)."""

from __future__ import annotations

from typing import Any

import pytest

from veil.crypto import ou, paillier
from veil.policy import TEST_POLICY

_KEYS: dict[str, Any] = {}


def keypair(name: str) -> Any:
    if name not in _KEYS:
        mod = {"paillier": paillier, "ou": ou}[name]
        _KEYS[name] = mod.generate_keypair(1024, policy=TEST_POLICY)
    return _KEYS[name]


@pytest.fixture(scope="session", params=["paillier", "ou"])
def keys(request: pytest.FixtureRequest) -> Any:
    return keypair(request.param)


@pytest.fixture(scope="session")
def paillier_keys() -> Any:
    return keypair("paillier")
