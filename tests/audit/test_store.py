"""The audit log in a real database (SQLite and PostgreSQL): appends, proofs, tampering."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine, delete, insert, select, text, update

from tests.audit.conftest import Fed, job_events
from tests.audit.test_merkle import ref_mth, ref_path, ref_proof
from veil.audit import (
    AuditError,
    AuditLog,
    Event,
    EventKind,
    check_witness,
    locate_rewrite,
    record_witness,
    verify_head,
    verify_log,
    witnessed_heads,
)
from veil.audit.canonical import canonical_json
from veil.audit.merkle import leaf_hash, push_leaf, verify_consistency, verify_inclusion
from veil.audit.store import entries_table, heads_table, node_id, nodes_table, state_table
from veil.errors import ConfigError


def fill(engine: Engine, fed: Fed, jobs: int = 5, node: str = "bank") -> AuditLog:
    """Append ``jobs`` small jobs, signing a head after each (as the node does)."""
    log = AuditLog(engine)
    for j in range(jobs):
        with engine.begin() as conn:
            log.append_many(conn, job_events(f"job-{j}"))
            log.sign_head(conn, fed.keys[node])
    return log


def stored(engine: Engine) -> list[bytes]:
    with engine.connect() as c:
        q = select(entries_table.c.entry).order_by(entries_table.c.seq)
        return [bytes(r.entry) for r in c.execute(q)]


def verify(engine: Engine, fed: Fed, node: str = "bank", **kw: object):  # type: ignore[no-untyped-def]
    with engine.connect() as c:
        return verify_log(c, cert=fed.keys[node].cert, ca=fed.ca, **kw)  # type: ignore[arg-type]


def test_append_is_part_of_the_callers_transaction(engine: Engine, fed: Fed) -> None:
    log = fill(engine, fed, jobs=1)
    n = len(job_events("x"))
    with pytest.raises(RuntimeError), engine.begin() as conn:
        assert log.append(conn, job_events("y")[0]) == n
        raise RuntimeError("the state change failed")
    with engine.begin() as conn:
        assert log.append(conn, job_events("z")[0]) == n  # no gap: the rolled-back seq is reused
        assert log.current(conn)[0] == n + 1
    report = verify(engine, fed)
    assert report.ok, report.summary()
    assert report.size == n + 1 and report.heads == 1
    assert any("not yet covered" in note for note in report.notes)


def test_entries_are_canonical_records(engine: Engine, fed: Fed) -> None:
    fill(engine, fed, jobs=1)
    import json

    data = stored(engine)
    rec = json.loads(data[0])
    assert rec["seq"] == 0 and rec["kind"] == "job.proposed" and rec["job"] == "job-0"
    assert rec["actor"] == "user:alice" and rec["time"].endswith("Z")
    assert canonical_json(rec) == data[0]


def test_proofs_match_the_reference_implementation(engine: Engine, fed: Fed) -> None:
    log = fill(engine, fed, jobs=4)  # 4 x 11 = 44 entries
    d = stored(engine)
    with engine.connect() as conn:
        heads = log.heads(conn)
        for h in heads:
            verify_head(h, fed.keys["bank"].cert, fed.ca)
            assert h.root == ref_mth(d[: h.size])
        n = len(d)
        for seq in (0, 1, 10, 31, 32, 43):
            leaf, path = log.inclusion_proof(conn, seq)
            assert leaf == leaf_hash(d[seq])
            assert path == ref_path(seq, d)
            assert verify_inclusion(leaf, seq, n, path, ref_mth(d))
            _, old_path = log.inclusion_proof(conn, seq, heads[-2].size) if seq < 33 else (0, [])
            if seq < 33:
                assert old_path == ref_path(seq, d[:33])
        for old in (1, 2, 11, 16, 22, 33, 44):
            proof = log.consistency_proof(conn, old)
            assert proof == ref_proof(old, d)
            assert verify_consistency(old, n, ref_mth(d[:old]), ref_mth(d), proof)
        assert log.root_at(conn, 20) == ref_mth(d[:20])
        with pytest.raises(ConfigError):
            log.inclusion_proof(conn, n)
        with pytest.raises(ConfigError):
            log.consistency_proof(conn, n + 1)


# -- tampering: each case is detected and located ------------------------------------------


def test_edited_byte_is_located(engine: Engine, fed: Fed) -> None:
    fill(engine, fed)
    data = stored(engine)[18]
    forged = data.replace(b'"rows":1000', b'"rows":1001')
    assert forged != data and len(forged) == len(data)
    with engine.begin() as c:
        c.execute(update(entries_table).where(entries_table.c.seq == 18).values(entry=forged))
    report = verify(engine, fed)
    assert not report.ok
    assert report.first is not None and report.first.seq == 18
    assert report.first.check == "leaf hash"


def test_edit_with_recomputed_hashes_is_caught_by_the_signed_head(engine: Engine, fed: Fed) -> None:
    """The editor also rewrites the leaf, nodes and state: only the signatures stop them."""
    fill(engine, fed)
    d = stored(engine)
    d[30] = d[30].replace(b'"sent":123456', b'"sent":1')
    rewrite_all(engine, d)
    report = verify(engine, fed)
    assert not report.ok
    first = report.first
    assert first is not None and first.check == "signed head"
    assert first.seq == 22 and "entries 22..32" in first.message  # the batch holding entry 30


def rewrite_all(engine: Engine, d: list[bytes]) -> None:
    """Replace the whole log by ``d`` with consistent leaf hashes, nodes and state."""
    frontier: list[bytes] = []
    nodes = []
    with engine.begin() as c:
        c.execute(delete(entries_table))
        c.execute(delete(nodes_table))
        for i, e in enumerate(d):
            leaf = leaf_hash(e)
            nodes += [
                {"id": node_id(lv, ix), "hash": h} for (lv, ix), h in push_leaf(frontier, i, leaf)
            ]
            c.execute(insert(entries_table).values(seq=i, kind="x", time="t", entry=e, leaf=leaf))
        if nodes:
            c.execute(insert(nodes_table), nodes)
        c.execute(update(state_table).values(size=len(d), frontier=b"".join(frontier)))


def test_deleted_entry_is_located(engine: Engine, fed: Fed) -> None:
    fill(engine, fed)
    with engine.begin() as c:
        c.execute(delete(entries_table).where(entries_table.c.seq == 25))
    report = verify(engine, fed)
    assert report.first is not None and report.first.seq == 25
    assert report.first.check == "sequence" and "deleted" in report.first.message


def test_swapped_entries_are_located(engine: Engine, fed: Fed) -> None:
    fill(engine, fed)
    d = stored(engine)
    with engine.begin() as c:
        for seq, other in ((12, 40), (40, 12)):
            c.execute(
                update(entries_table)
                .where(entries_table.c.seq == seq)
                .values(entry=d[other], leaf=leaf_hash(d[other]))
            )
    report = verify(engine, fed)
    assert report.first is not None and report.first.seq == 12
    assert report.first.check == "entry seq" and "reordered" in report.first.message


def test_forged_entry_is_located(engine: Engine, fed: Fed) -> None:
    fill(engine, fed)
    n = len(stored(engine))
    ev = Event(
        EventKind.OUTPUT_RELEASED,
        "node:bank",
        {"recipient": "telco", "artifact_hash": "ab" * 32},
        "job-1",
    )
    data = canonical_json(ev.record(n, "2026-01-01T00:00:00.000000Z"))
    with engine.begin() as c:
        c.execute(
            insert(entries_table).values(
                seq=n,
                kind="output.released",
                job="job-1",
                time="t",
                entry=data,
                leaf=leaf_hash(data),
            )
        )
    report = verify(engine, fed)
    assert report.first is not None and report.first.seq == n
    assert report.first.check == "tree size" and "inserted" in report.first.message


def test_unsigned_tail_is_revalidated(engine: Engine, fed: Fed) -> None:
    """An entry no head vouches for is re-checked against the schema, hashes or not."""
    fill(engine, fed, jobs=2)
    d = stored(engine)
    d.append(
        d[3]
        .replace(b'"seq":3,', f'"seq":{len(d)},'.encode())
        .replace(b'"rows":1000', b'"rows":1000,"ids":["alice"]')
    )
    assert b'"ids"' in d[-1] and f'"seq":{len(d) - 1},'.encode() in d[-1]
    rewrite_all(engine, d)  # leaf, nodes and state all consistent with the forgery
    report = verify(engine, fed)
    assert report.first is not None and report.first.seq == len(d) - 1
    assert report.first.check in {"canonical form", "schema"}
    assert any(f.check == "schema" and "ids" in f.message for f in report.findings)


def test_deep_verify_revalidates_signed_entries(engine: Engine, fed: Fed) -> None:
    fill(engine, fed, jobs=1)
    with engine.connect() as c:
        assert verify_log(c, deep=True).ok


def test_truncated_and_resigned_log_is_caught_by_a_partners_witness(
    engine: Engine, fed: Fed, tmp_path: object
) -> None:
    """bank rewrites its history after job 3 and re-signs with its own key: telco catches it."""
    from sqlalchemy import create_engine

    from veil.audit import configure_sqlite

    log = fill(engine, fed, jobs=3)
    partner = configure_sqlite(create_engine(f"sqlite:///{tmp_path}/telco.db"))
    AuditLog(partner).create_tables()
    with engine.begin() as c:
        bank_head = log.sign_head(c, fed.keys["bank"])
    with partner.begin() as pc:
        record_witness(pc, bank_head, fed.keys["bank"].cert, fed.ca, job="job-2")
        AuditLog(partner).sign_head(pc, fed.keys["telco"])
    held = [h for _, h in witnessed_heads(partner.connect(), "bank")]
    assert held == [bank_head]
    with engine.begin() as c:  # an honest log grows past the witnessed head: still consistent
        log.append_many(c, job_events("job-3"))
    with engine.connect() as c:
        check_witness(c, held[0])
        assert locate_rewrite(c, held) is None

    # bank keeps jobs 0-1, drops job 2, appends an innocent-looking job, and re-signs.
    keep = stored(engine)[:22]
    rewrite_all(engine, keep)
    with engine.begin() as c:
        c.execute(delete(heads_table).where(heads_table.c.size > 22))
        log.append_many(c, job_events("job-9"))
        log.sign_head(c, fed.keys["bank"])
    assert verify(engine, fed).ok  # on its own the rewritten log is self-consistent...
    with engine.connect() as c, pytest.raises(AuditError, match="rewritten"):
        check_witness(c, held[0])  # ...but not with the head telco holds
    with engine.connect() as c:
        assert locate_rewrite(c, held) == (0, 33)
    report = verify(engine, fed, witnessed=held)
    assert report.first is not None and report.first.check == "witnessed head"
    assert report.first.seq == 22  # the last head bank still matches: rewrite is after 22

    # truncation only (no new entries): the log is now shorter than the witnessed head
    rewrite_all(engine, keep)
    with engine.connect() as c, pytest.raises(AuditError, match="truncated"):
        check_witness(c, held[0])
    report = verify(engine, fed, witnessed=held)
    assert report.first is not None and report.first.seq == 22
    assert "truncated" in report.first.message


def test_witness_refuses_a_head_with_a_bad_signature(engine: Engine, fed: Fed) -> None:
    log = fill(engine, fed, jobs=1)
    with engine.begin() as c:
        head = log.sign_head(c, fed.keys["bank"])
    import dataclasses

    forged = dataclasses.replace(head, size=head.size + 1)
    with engine.begin() as c, pytest.raises(AuditError, match="bad signature"):
        record_witness(c, forged, fed.keys["bank"].cert, fed.ca)
    with engine.begin() as c, pytest.raises(AuditError, match="signed by"):
        record_witness(c, head, fed.keys["telco"].cert, fed.ca)


# -- concurrency ------------------------------------------------------------------------------


def test_twenty_concurrent_writers_leave_no_gaps(engine: Engine, fed: Fed) -> None:
    log = AuditLog(engine)
    per_writer, errors = 15, []

    def writer(w: int) -> None:
        try:
            for i in range(per_writer):
                with engine.begin() as conn:
                    ev = job_events(f"w{w}-{i}", n_steps=0)[0]
                    log.append(conn, ev)
                    if i % 5 == 4:
                        log.sign_head(conn, fed.keys["bank"])
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    with engine.connect() as c:
        seqs = [int(r[0]) for r in c.execute(text("SELECT seq FROM audit_entries ORDER BY seq"))]
    assert seqs == list(range(20 * per_writer))
    report = verify(engine, fed)
    assert report.ok, report.summary()
    assert report.heads == 20 * per_writer // 5
