"""The node's SQL tables (SQLAlchemy Core). Alembic migrations create them.

``tests/node/test_store.py`` checks that the migrated database matches these
tables exactly, so a change here without a migration fails a test.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

tokens = Table(
    "node_tokens",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
)

datasets = Table(
    "node_datasets",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("path", Text, nullable=False),
    Column("format", String(16), nullable=False),
    Column("id_col", String(256), nullable=False),
    Column("label_col", String(256), nullable=True),
    Column("columns", JSON, nullable=False),
    Column("dtypes", JSON, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created", Float, nullable=False),
)

jobs = Table(
    "node_jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("initiator", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("parties", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
)

votes = Table(
    "node_votes",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("party", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("info", JSON, nullable=False),
    Column("at", Float, nullable=False),
)

steps = Table(
    "node_steps",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("progress", Float, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("bytes", BigInteger, nullable=False),
)

artifacts = Table(
    "node_artifacts",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("name", String(512), primary_key=True),
    Column("path", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
)

events = Table(
    "node_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("job_id", String(64), nullable=True, index=True),
    Column("kind", String(64), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("detail", JSON, nullable=False),
)
