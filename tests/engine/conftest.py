"""A Ray cluster on loopback for the engine tests: a head and one more worker node.

``ray_cluster`` starts, once per session, a head and one worker node (one CPU each, a
small object store) on this machine with :func:`veil.engine.loopback.start_cluster`,
and yields it; ``cluster.client`` is the head's ``127.0.0.1:PORT`` for ``ray://``.
Teardown stops exactly the process groups it started. Where Ray is missing or cannot
start, tests that use it are skipped with a one-line reason, except under ``CI=true``
(or ``VEIL_REQUIRE_RAY=1``), where they fail.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.require import unavailable
from veil.engine.loopback import RayCluster, ray_env, start_cluster

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["RayCluster", "cluster_env", "ray_env", "start_cluster"]


def cluster_env() -> dict[str, str]:
    """Ray's processes import Veil and this tests package (tasks defined in tests)."""
    return ray_env((ROOT,))


def ray_unavailable(reason: str) -> None:
    """Skip with the reason, or fail where Ray is required (CI)."""
    unavailable("Ray", "VEIL_REQUIRE_RAY", reason, ci=True)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """The session's loopback Ray cluster (head + one worker node, 1 CPU each)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        ray_unavailable("Ray is not installed (pip install 'veil[ray]')")
    try:
        cluster = start_cluster(workers=1, env=cluster_env())
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        ray_unavailable(f"cannot start a loopback cluster: {e}")
        return
    try:
        yield cluster
    finally:
        from veil.engine import ray_engine

        ray_engine.disconnect()
        cluster.stop()
