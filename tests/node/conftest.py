"""Fixtures of the node tests: a federation CA, node folders, stores, small tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from veil.net.certs import init_ca
from veil.net.grpc_transport import free_port
from veil.node.store import MemoryStore, Store

STORES = ("memory", "sqlite", "postgres")


def postgres_db(request: pytest.FixtureRequest) -> str:
    """A fresh PostgreSQL database from the shared ``postgres_db`` fixture (tests/conftest.py)."""
    try:
        return str(request.getfixturevalue("postgres_db"))
    except pytest.FixtureLookupError:
        pytest.skip("the postgres_db fixture (tests/conftest.py, audit work) is not here yet")


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each storage implementation: the same tests run on all of them."""
    s: Store
    if request.param == "memory":
        s = MemoryStore()
    else:
        from veil.node.sqlstore import SqlStore

        url = f"sqlite:///{tmp_path / 'node.db'}"
        s = SqlStore(postgres_db(request) if request.param == "postgres" else url)
    yield s
    s.close()


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    """A federation CA folder."""
    d = tmp_path / "ca"
    init_ca(d)
    return d


def table(path: Path, n: int, *, start: int = 0, label: bool = False, seed: int = 0) -> Path:
    """A CSV with ids c{start}..c{start+n-1}, two features and optionally a 0/1 label y."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": [f"c{i}" for i in range(start, start + n)]})
    if label:
        df["y"] = rng.integers(0, 2, n)
    df["x0"] = rng.normal(size=n).round(6)
    df["x1"] = rng.normal(size=n).round(6)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def addresses(names: list[str]) -> dict[str, tuple[str, str]]:
    """Free loopback (peer, api) addresses per node name."""
    return {n: (f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}") for n in names}
