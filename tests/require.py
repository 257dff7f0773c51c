"""Tests that need an outside component (PostgreSQL, Chromium, Ray, SecretFlow's peer):
skipped with a one-line reason on a developer's machine, failed where it is required."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(what: str, required_by: str, reason: str, *, ci: bool = False) -> NoReturn:
    """Skip with ``reason``; fail instead when ``required_by`` is ``1`` in the environment
    (``scripts/test`` sets it under CI), or when ``ci`` and ``CI=true``."""
    if os.environ.get(required_by) == "1" or (ci and os.environ.get("CI") == "true"):
        flag = f"CI=true or {required_by}=1" if ci else f"{required_by}=1"
        pytest.fail(f"{what} required ({flag}) but unavailable: {reason}")
    pytest.skip(f"{what} unavailable: {reason}")
