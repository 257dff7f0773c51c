"""Benchmark the tamper-evident audit log (issue #19) against plain rows, on SQLite.

Measures, in one run on a file database (WAL, synchronous=NORMAL, as a node runs):

* append throughput in group commits (``--batch`` events per transaction, as a busy
  node commits a job's event batch), side by side with inserting the same events as
  plain rows (seq, kind, job, time, JSON payload): the overhead of tamper evidence;
* full verification (every leaf, node and head recomputed) of an ``--n``-entry log;
* inclusion and consistency proof size and time at that size.

    python benchmarks/audit.py                 # n = 1,000,000
    python benchmarks/audit.py --n 200000      # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from veil.audit import AuditLog, Event, EventKind, configure_sqlite, verify_log  # noqa: E402
from veil.audit.merkle import verify_consistency, verify_inclusion  # noqa: E402
from veil.net.certs import throwaway_federation  # noqa: E402


def events(n: int) -> list[Event]:
    """A busy node's mix: each job proposes, votes, then steps that read and exchange data."""
    out: list[Event] = []
    j = 0
    while len(out) < n:
        job = f"job-{j}"
        jh = hashlib.sha256(job.encode()).hexdigest()
        out.append(
            Event(EventKind.JOB_PROPOSED, "user:alice", {"job_hash": jh, "initiator": "bank"}, job)
        )
        for s in range(4):
            step = f"s{s}"
            out += [
                Event(EventKind.STEP_STARTED, "node:bank", {"step": step}, job),
                Event(
                    EventKind.DATASET_ACCESSED,
                    "node:bank",
                    {
                        "dataset": "loans",
                        "columns": ["amount", "term"],
                        "rows": 10000 + j,
                        "step": step,
                    },
                    job,
                ),
                Event(
                    EventKind.BYTES_EXCHANGED,
                    "node:bank",
                    {"step": step, "peer": "telco", "sent": 1000 * j, "received": 999 * j},
                    job,
                ),
                Event(EventKind.STEP_ENDED, "node:bank", {"step": step, "status": "ok"}, job),
            ]
        j += 1
    return out[:n]


def plain_table(md: MetaData) -> Table:
    return Table(
        "plain_events",
        md,
        Column("seq", Integer, primary_key=True),
        Column("kind", String(40)),
        Column("job", String(128)),
        Column("time", String(32)),
        Column("actor", String(140)),
        Column("payload", LargeBinary),
    )


def bench_plain(path: Path, evs: list[Event], batch: int) -> float:
    eng = create_engine(f"sqlite:///{path}")
    configure_sqlite(eng)
    md = MetaData()
    t = plain_table(md)
    md.create_all(eng)
    t0 = time.perf_counter()
    for i in range(0, len(evs), batch):
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        rows = [
            {
                "kind": e.kind.value,
                "job": e.job,
                "time": now,
                "actor": e.actor,
                "payload": json.dumps(e.payload).encode(),
            }
            for e in evs[i : i + batch]
        ]
        with eng.begin() as c:
            c.execute(insert(t), rows)
    dt = time.perf_counter() - t0
    eng.dispose()
    return len(evs) / dt


def bench_audit(
    eng_path: Path, evs: list[Event], batch: int, key: object
) -> tuple[AuditLog, float]:
    eng = configure_sqlite(create_engine(f"sqlite:///{eng_path}"))
    log = AuditLog(eng)
    log.create_tables()
    t0 = time.perf_counter()
    for i in range(0, len(evs), batch):
        with eng.begin() as c:
            log.append_many(c, evs[i : i + batch])
            log.sign_head(c, key)  # type: ignore[arg-type]
    dt = time.perf_counter() - t0
    return log, len(evs) / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="entries for verify and proofs")
    ap.add_argument("--n-append", type=int, default=100_000, help="events for the append race")
    ap.add_argument("--batch", type=int, default=100, help="events per committed transaction")
    ap.add_argument("--proofs", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        fed = throwaway_federation(["bank"], tmp / "fed")
        from veil.audit import load_node_key

        key = load_node_key(fed["bank"].cert, fed["bank"].key)
        evs = events(a.n_append)
        t_plain = bench_plain(tmp / "plain.db", evs, a.batch)
        _, t_audit = bench_audit(tmp / "race.db", evs, a.batch, key)
        print(
            f"append, batches of {a.batch}, {a.n_append:,} events: audit log {t_audit:,.0f} "
            f"events/s, plain rows {t_plain:,.0f} events/s (x{t_plain / t_audit:.2f})"
        )

        big = events(a.n)
        t0 = time.perf_counter()
        log, rate = bench_audit(tmp / "big.db", big, 10_000, key)
        print(
            f"built a {a.n:,}-entry log in {time.perf_counter() - t0:.1f} s "
            f"({rate:,.0f} events/s, batches of 10,000)"
        )
        del big
        with log.engine.connect() as c:
            t0 = time.perf_counter()
            rep = verify_log(c, cert=key.cert, ca=fed["bank"].ca_cert.read_bytes())  # type: ignore[arg-type]
            t_verify = time.perf_counter() - t0
            assert rep.ok, rep.summary()
            print(
                f"full verify of {a.n:,} entries: {t_verify:.1f} s "
                f"({rep.summary().splitlines()[0]})"
            )
            size, root = log.current(c)
            rng = random.Random(1)
            inc, con, inc_len, con_len = [], [], [], []
            for _ in range(a.proofs):
                seq = rng.randrange(size)
                t0 = time.perf_counter()
                leaf, path = log.inclusion_proof(c, seq)
                inc.append(time.perf_counter() - t0)
                assert verify_inclusion(leaf, seq, size, path, root)
                inc_len.append(len(path))
                old = rng.randrange(1, size)
                t0 = time.perf_counter()
                proof = log.consistency_proof(c, old)
                con.append(time.perf_counter() - t0)
                assert verify_consistency(old, size, log.root_at(c, old), root, proof)
                con_len.append(len(proof))
        print(
            f"inclusion proof at n={size:,}: {statistics.mean(inc_len):.1f} hashes "
            f"(log2 n = {size.bit_length() - 1}), median {statistics.median(inc) * 1e3:.2f} ms"
        )
        print(
            f"consistency proof at n={size:,}: {statistics.mean(con_len):.1f} hashes, "
            f"median {statistics.median(con) * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
