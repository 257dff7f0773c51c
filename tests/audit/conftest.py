"""Audit fixtures: a fresh database on SQLite and on PostgreSQL, and a small federation."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from veil.audit import AuditLog, Event, EventKind, NodeKey, configure_sqlite, load_node_key
from veil.net.certs import TlsFiles, throwaway_federation


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database with the audit tables created."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'node.db'}"
    else:
        url = str(request.getfixturevalue("postgres_db"))
    eng = configure_sqlite(create_engine(url))
    AuditLog(eng).create_tables()
    yield eng
    eng.dispose()


@dataclass(frozen=True)
class Fed:
    """A federation of three nodes: their signing keys, the CA certificate and the files."""

    keys: dict[str, NodeKey]
    ca: bytes
    files: dict[str, TlsFiles]
    ca_dir: Path  # the CA's folder (ca.crt, ca.key): ``veil node init --ca``


@pytest.fixture(scope="session")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Fed:
    """bank, telco and insurer, with certificates from one throwaway CA."""
    work = tmp_path_factory.mktemp("fed")
    files = throwaway_federation(["bank", "telco", "insurer"], work)
    keys = {p: load_node_key(f.cert, f.key) for p, f in files.items()}
    return Fed(keys, files["bank"].ca_cert.read_bytes(), files, work / "ca")


@dataclass(frozen=True)
class NodeDir:
    """A folder made by ``veil node init``: its audit log and the key it signs heads with."""

    dir: Path
    log: AuditLog
    key: NodeKey
    ca: Path


def node_dir(tmp: Path, fed: Fed, party: str, database: str = "") -> NodeDir:
    """``veil node init`` for ``party`` (certificate from ``fed``'s CA) in ``tmp/party``."""
    from veil.audit.config import read_node_dir
    from veil.node.admin import init_node

    d = tmp / party
    init_node(d, name=party, ca_dir=fed.ca_dir, database=database)
    files = read_node_dir(d)
    assert files.cert is not None and files.key is not None and files.ca is not None
    engine = configure_sqlite(create_engine(files.database))
    return NodeDir(d, AuditLog(engine), load_node_key(files.cert, files.key), files.ca)


def h(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def job_events(job: str, n_steps: int = 2) -> list[Event]:
    """The events one small job produces on a node, in order."""
    out = [
        Event(EventKind.JOB_PROPOSED, "user:alice", {"job_hash": h(job), "initiator": "bank"}, job),
        Event(
            EventKind.VOTE,
            "role:risk",
            {"voter": "telco", "decision": "approve", "rule": "auto-psi"},
            job,
        ),
    ]
    for s in range(n_steps):
        step = f"s{s}"
        out += [
            Event(EventKind.STEP_STARTED, "node:bank", {"step": step, "protocol": "psi"}, job),
            Event(
                EventKind.DATASET_ACCESSED,
                "node:bank",
                {"dataset": "loans", "columns": ["id", "amount"], "rows": 1000, "step": step},
                job,
            ),
            Event(
                EventKind.BYTES_EXCHANGED,
                "node:bank",
                {"step": step, "peer": "telco", "sent": 123456, "received": 65432},
                job,
            ),
            Event(EventKind.STEP_ENDED, "node:bank", {"step": step, "status": "ok"}, job),
        ]
    out.append(
        Event(
            EventKind.OUTPUT_RELEASED,
            "node:bank",
            {"recipient": "bank", "artifact_hash": h(job + "out")},
            job,
        )
    )
    return out
