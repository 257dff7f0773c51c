"""Shared fixtures of the network tests: every session test runs over each transport."""

from __future__ import annotations

import pytest

from veil.net.local import TRANSPORTS


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """The transport kind a test runs over ("memory" or "grpc" mutual TLS on loopback)."""
    return str(request.param)
