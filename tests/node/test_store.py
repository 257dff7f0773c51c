"""Every Store implementation passes the same tests; the migrations match the tables."""

from __future__ import annotations

from pathlib import Path

import pytest

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
from veil.node.store import Store

from .conftest import postgres_db


def _ds(name: str = "bank") -> Dataset:
    return Dataset(
        name, "/x/abc.csv", "csv", "id", "y", ("id", "y", "x0"), ("object",) * 3, 10, "ab" * 32, 5.0
    )


def test_tokens_are_found_by_digest(store: Store) -> None:
    with store.change(Event("token.issued")) as tx:
        tx.add_token("d1", Role.OPERATOR)
    assert store.token_role("d1") == Role.OPERATOR
    assert store.token_role("d2") is None


def test_records_round_trip(store: Store) -> None:
    job = Job("j1", "demo", "bank", "f" * 64, "name: demo\n", ("bank", "bureau"), created=1.0)
    with store.change(Event("job.submitted", "j1", "op", {"sha256": "f" * 64})) as tx:
        tx.put_dataset(_ds())
        tx.put_job(job)
        tx.put_vote(Vote("j1", "bank", VoteState.APPROVED, "f" * 64, "me", {"port": 5}))
        tx.put_step(StepState("j1", 0, "psi"))
        tx.put_artifact(Artifact("j1", "bank/x.csv", "/p", "e" * 64, 3))
    assert store.dataset("bank") == _ds()
    assert [d.name for d in store.datasets()] == ["bank"]
    assert store.job("j1") == job and store.job("nope") is None
    (v,) = store.votes("j1")
    assert v.state == VoteState.APPROVED and v.info == {"port": 5}
    assert store.steps("j1") == [StepState("j1", 0, "psi")]
    assert store.artifacts("j1")[0].sha256 == "e" * 64
    (ev,) = store.events("j1")
    assert ev.kind == "job.submitted" and ev.actor == "op" and ev.detail == {"sha256": "f" * 64}


def test_updates_replace(store: Store) -> None:
    job = Job("j1", "demo", "bank", "f" * 64, "t", ("bank", "bureau"))
    with store.change(Event("a", "j1")) as tx:
        tx.put_job(job)
    with store.change(Event("b", "j1")) as tx:
        tx.put_job(Job(**{**job.__dict__, "state": JobState.FAILED, "error": "boom"}))
    got = store.job("j1")
    assert got is not None and got.state == JobState.FAILED and got.error == "boom"
    store.progress(StepState("j1", 0, "psi", "running", 0.5))
    store.progress(StepState("j1", 0, "psi", "running", 0.75))
    assert store.steps("j1")[0].progress == 0.75
    assert [e.kind for e in store.events("j1")] == ["a", "b"]


def test_a_failed_change_writes_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.change(Event("job.submitted", "j1")) as tx:
        tx.put_job(Job("j1", "demo", "bank", "f" * 64, "t", ("bank", "bureau")))
        raise RuntimeError("crash in the middle")
    assert store.job("j1") is None
    assert store.events() == []


def test_jobs_newest_first(store: Store) -> None:
    with store.change(Event("x")) as tx:
        for i in range(3):
            tx.put_job(Job(f"j{i}", "d", "bank", "f", "t", ("a", "b"), created=float(i)))
    assert [j.id for j in store.jobs()] == ["j2", "j1", "j0"]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_migrations_make_exactly_the_tables(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from veil.audit import audit_metadata
    from veil.node.schema import metadata
    from veil.node.sqlstore import SqlStore

    url = postgres_db(request) if kind == "postgres" else f"sqlite:///{tmp_path / 'm.db'}"
    s = SqlStore(url)
    try:
        with s.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), [metadata, audit_metadata])
        assert diff == []
    finally:
        s.close()
    SqlStore(url).close()  # migrating again is a no-op
