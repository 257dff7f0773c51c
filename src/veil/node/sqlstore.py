"""The SQL :class:`~veil.node.store.Store`: SQLite by default, PostgreSQL by URL.

Tables are created by the Alembic migrations in :mod:`veil.node.migrations`
(:func:`migrate` runs them to the head on open; they also make the audit log's
tables). Events go through an :class:`~veil.node.store.EventSink` on the same
connection as the change they describe: :class:`TableSink` (the plain
``node_events`` table) by default, :class:`veil.node.auditmap.AuditSink` in a node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, insert, select, update
from sqlalchemy.engine import Row

from veil.errors import ConfigError
from veil.node import schema as t
from veil.node.model import (
    Artifact,
    Dataset,
    Event,
    Job,
    JobState,
    Role,
    StepState,
    Vote,
    VoteState,
)
from veil.node.store import EventSink, Tx


def migrate(engine: Engine) -> None:
    """Bring the database schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite is made safe for concurrent writers."""
    try:
        engine = create_engine(url, future=True)
    except Exception as e:  # SQLAlchemy raises several types for a bad URL
        raise ConfigError(
            "database",
            f"cannot use '{url}': {e}",
            "give sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
        ) from None
    from veil.audit import configure_sqlite

    return configure_sqlite(engine)  # SQLite: WAL, a busy wait, BEGIN IMMEDIATE


def read_engine(engine: Engine) -> Engine:
    """An engine for reads only: on a SQLite file, one whose reads take no lock.

    The writing engine begins every transaction with ``BEGIN IMMEDIATE`` (the write
    lock), reads too; readers of a WAL database need no lock at all, so the API's reads
    do not queue behind the jobs' progress writes. Other databases: ``engine`` itself.
    """
    db = engine.url.database
    if engine.dialect.name != "sqlite" or db in (None, "", ":memory:"):
        return engine
    reader = create_engine(engine.url, future=True)

    @event.listens_for(reader, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        cur.execute("PRAGMA query_only = ON")
        cur.close()

    return reader


class TableSink:
    """The plain events table (until the audit log takes over)."""

    def append(self, conn: Any, ev: Event) -> None:
        conn.execute(
            insert(t.events).values(
                at=ev.at, job_id=ev.job_id, kind=ev.kind, actor=ev.actor, detail=ev.detail
            )
        )


class _SqlTx:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _upsert(self, table: Any, keys: dict[str, Any], values: dict[str, Any]) -> None:
        where = [table.c[k] == v for k, v in keys.items()]
        res = self.conn.execute(update(table).where(*where).values(**values))
        if res.rowcount == 0:
            self.conn.execute(insert(table).values(**keys, **values))

    def add_token(self, digest: str, role: Role) -> None:
        self._upsert(t.tokens, {"digest": digest}, {"role": str(role)})

    def put_dataset(self, d: Dataset) -> None:
        self._upsert(
            t.datasets,
            {"name": d.name},
            {
                "path": d.path,
                "format": d.format,
                "id_col": d.id_col,
                "label_col": d.label_col,
                "columns": list(d.columns),
                "dtypes": list(d.dtypes),
                "rows": d.rows,
                "sha256": d.sha256,
                "created": d.created,
            },
        )

    def put_job(self, j: Job) -> None:
        self._upsert(
            t.jobs,
            {"id": j.id},
            {
                "name": j.name,
                "initiator": j.initiator,
                "sha256": j.sha256,
                "text": j.text,
                "parties": list(j.parties),
                "state": str(j.state),
                "error": j.error,
                "created": j.created,
                "updated": j.updated,
            },
        )

    def put_vote(self, v: Vote) -> None:
        self._upsert(
            t.votes,
            {"job_id": v.job_id, "party": v.party},
            {
                "state": str(v.state),
                "sha256": v.sha256,
                "reason": v.reason,
                "info": v.info,
                "at": v.at,
            },
        )

    def put_step(self, s: StepState) -> None:
        _put_step(self.conn, s)

    def put_artifact(self, a: Artifact) -> None:
        self._upsert(
            t.artifacts,
            {"job_id": a.job_id, "name": a.name},
            {"path": a.path, "sha256": a.sha256, "size": a.size},
        )


def _put_step(conn: Connection, s: StepState) -> None:
    tx = _SqlTx(conn)
    tx._upsert(
        t.steps,
        {"job_id": s.job_id, "idx": s.index},
        {
            "name": s.name,
            "state": s.state,
            "progress": s.progress,
            "seconds": s.seconds,
            "bytes": s.bytes,
        },
    )


class SqlStore:
    """A :class:`~veil.node.store.Store` on a SQLAlchemy engine."""

    def __init__(self, url: str, sink: Callable[[Engine], EventSink] | None = None) -> None:
        self.engine = make_engine(url)
        migrate(self.engine)
        self.reader = read_engine(self.engine)
        self.sink: EventSink = TableSink() if sink is None else sink(self.engine)

    @contextmanager
    def _change(self, ev: Event) -> Iterator[Tx]:
        with self.engine.begin() as conn:
            yield _SqlTx(conn)
            self.sink.append(conn, ev)

    def change(self, event: Event) -> AbstractContextManager[Tx]:
        return self._change(event)

    def progress(self, s: StepState) -> None:
        with self.engine.begin() as conn:
            _put_step(conn, s)

    def _rows(self, stmt: Any) -> list[Row[Any]]:
        with self.reader.connect() as conn:
            return list(conn.execute(stmt))

    def token_role(self, digest: str) -> Role | None:
        rows = self._rows(select(t.tokens.c.role).where(t.tokens.c.digest == digest))
        return Role(rows[0].role) if rows else None

    def dataset(self, name: str) -> Dataset | None:
        rows = self._rows(select(t.datasets).where(t.datasets.c.name == name))
        return _dataset(rows[0]) if rows else None

    def datasets(self) -> list[Dataset]:
        return [_dataset(r) for r in self._rows(select(t.datasets).order_by(t.datasets.c.name))]

    def job(self, job_id: str) -> Job | None:
        rows = self._rows(select(t.jobs).where(t.jobs.c.id == job_id))
        return _job(rows[0]) if rows else None

    def jobs(self) -> list[Job]:
        stmt = select(t.jobs).order_by(t.jobs.c.created.desc(), t.jobs.c.id)
        return [_job(r) for r in self._rows(stmt)]

    def votes(self, job_id: str) -> list[Vote]:
        stmt = select(t.votes).where(t.votes.c.job_id == job_id).order_by(t.votes.c.party)
        return [
            Vote(r.job_id, r.party, VoteState(r.state), r.sha256, r.reason, dict(r.info), r.at)
            for r in self._rows(stmt)
        ]

    def steps(self, job_id: str) -> list[StepState]:
        stmt = select(t.steps).where(t.steps.c.job_id == job_id).order_by(t.steps.c.idx)
        return [
            StepState(r.job_id, r.idx, r.name, r.state, r.progress, r.seconds, r.bytes)
            for r in self._rows(stmt)
        ]

    def artifacts(self, job_id: str) -> list[Artifact]:
        stmt = select(t.artifacts).where(t.artifacts.c.job_id == job_id)
        rows = self._rows(stmt.order_by(t.artifacts.c.name))
        return [Artifact(r.job_id, r.name, r.path, r.sha256, r.size) for r in rows]

    def events(self, job_id: str | None = None) -> list[Event]:
        stmt = select(t.events).order_by(t.events.c.seq)
        if job_id is not None:
            stmt = stmt.where(t.events.c.job_id == job_id)
        return [Event(r.kind, r.job_id, r.actor, dict(r.detail), r.at) for r in self._rows(stmt)]

    def close(self) -> None:
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()


def _dataset(r: Row[Any]) -> Dataset:
    return Dataset(
        name=r.name,
        path=r.path,
        format=r.format,
        id_col=r.id_col,
        label_col=r.label_col,
        columns=tuple(r.columns),
        dtypes=tuple(r.dtypes),
        rows=int(r.rows),
        sha256=r.sha256,
        created=r.created,
    )


def _job(r: Row[Any]) -> Job:
    return Job(
        id=r.id,
        name=r.name,
        initiator=r.initiator,
        sha256=r.sha256,
        text=r.text,
        parties=tuple(r.parties),
        state=JobState(r.state),
        error=r.error,
        created=r.created,
        updated=r.updated,
    )
