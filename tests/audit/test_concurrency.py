"""20 jobs appended at once by 20 OS processes to one database: dense seqs, a log that verifies.

Each process is one job's writer, as a node records a job: one transaction per event
(proposal, votes, steps, bytes, outputs, end), then a signed head. They start together
behind a barrier so their transactions interleave; SQLite serialises them on its write
lock, PostgreSQL on the ``audit_state`` row (``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select

from tests.audit.conftest import Fed, job_events
from veil.audit import AuditLog, configure_sqlite, verify_log
from veil.audit.store import entries_table

JOBS = 20


def _writer(url: str, job: int, key_files: tuple[str, str], barrier: Any, q: Any) -> None:
    try:
        from veil.audit import load_node_key

        key = load_node_key(Path(key_files[0]), Path(key_files[1]))
        engine = configure_sqlite(create_engine(url))
        log = AuditLog(engine)
        events = job_events(f"job-{job}", n_steps=2)
        barrier.wait(60)
        seqs = []
        for ev in events:  # one transaction per event, as the node's state changes
            with engine.begin() as c:
                seqs += log.append_many(c, [ev])
            time.sleep(0.02)  # a job works between its state changes: the others get in
        with engine.begin() as c:
            log.sign_head(c, key)
        engine.dispose()
        q.put((job, seqs, None))
    except BaseException as e:  # reported by the parent
        q.put((job, [], f"{type(e).__name__}: {e}"))
    finally:
        q.close()
        q.join_thread()  # the result is written before the child goes
        os._exit(0)  # no atexit handlers of the parent's libraries in the child


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_twenty_jobs_in_twenty_processes_leave_a_dense_verified_log(
    tmp_path: Path, fed: Fed, db: str, request: pytest.FixtureRequest
) -> None:
    url = (
        str(request.getfixturevalue("postgres_db"))
        if db == "postgres"
        else f"sqlite:///{tmp_path / 'node.db'}"
    )
    engine: Engine = configure_sqlite(create_engine(url))
    AuditLog(engine).create_tables()
    engine.dispose()
    ctx = mp.get_context("fork")  # the test's imports are shared: 20 writers start at once
    barrier, q = ctx.Barrier(JOBS), ctx.Queue()
    files = (str(fed.files["bank"].cert), str(fed.files["bank"].key))
    t0 = time.monotonic()
    procs = [ctx.Process(target=_writer, args=(url, j, files, barrier, q)) for j in range(JOBS)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert time.monotonic() - t0 < 60
    errors = [(j, e) for j, _, e in results if e]
    assert not errors, errors[:3]
    per_job = len(job_events("x", n_steps=2))
    got = sorted(s for _, seqs, _ in results for s in seqs)
    assert got == list(range(JOBS * per_job))  # every append got its own seq, no gaps
    interleaved = sum(
        1 for _, seqs, _ in results if seqs != list(range(seqs[0], seqs[0] + per_job))
    )
    assert interleaved  # the writers really ran at the same time
    engine = configure_sqlite(create_engine(url))
    with engine.connect() as c:
        stored = [
            int(r[0]) for r in c.execute(select(entries_table.c.seq).order_by(entries_table.c.seq))
        ]
        report = verify_log(c, cert=fed.keys["bank"].cert, ca=fed.ca)  # type: ignore[arg-type]
    engine.dispose()
    assert stored == list(range(JOBS * per_job))
    assert report.ok and report.heads == JOBS, report.summary()
    assert report.size == JOBS * per_job
