"""The audit log's tables and the append / head / proof operations on them.

``append`` runs inside the caller's transaction, so an entry commits or rolls back
with the state change it records. Appends are serialised on the one ``audit_state``
row (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite a write to that row takes
the database write lock, best with :func:`configure_sqlite`'s ``BEGIN IMMEDIATE``),
so sequence numbers are dense and the frontier stays consistent. The state row keeps
the tree's frontier (at most log2 n hashes): an append is O(log n), and every
completed perfect subtree is stored so a proof reads O(log n) rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    event,
    insert,
    select,
    update,
)

from veil.audit.canonical import canonical_record
from veil.audit.events import Event, now
from veil.audit.heads import AuditError, NodeKey, SignedHead, sign
from veil.audit.merkle import (
    HASH_LEN,
    Node,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    push_leaf,
    resolve,
    root_of_frontier,
)
from veil.errors import ConfigError

audit_metadata = MetaData()

state_table = Table(
    "audit_state",
    audit_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("frontier", LargeBinary, nullable=False),
)
entries_table = Table(
    "audit_entries",
    audit_metadata,
    # INTEGER PRIMARY KEY is SQLite's rowid: entries are stored in seq order, no extra index
    Column(
        "seq",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("kind", String(40), nullable=False),
    Column("job", String(128), nullable=True, index=True),
    Column("time", String(32), nullable=False),
    Column("entry", LargeBinary, nullable=False),
    Column("leaf", LargeBinary(HASH_LEN), nullable=False),
)
nodes_table = Table(
    "audit_nodes",
    audit_metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),  # node_id(level, index)
    Column("hash", LargeBinary(HASH_LEN), nullable=False),
)
heads_table = Table(
    "audit_heads",
    audit_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("node", String(128), nullable=False),
    Column("size", BigInteger, nullable=False, index=True),
    Column("root", LargeBinary(HASH_LEN), nullable=False),
    Column("time", String(32), nullable=False),
    Column("signature", LargeBinary, nullable=False),
)

_STATE_ID = 1
_IDX_BITS = 48


def node_id(level: int, index: int) -> int:
    """The key of the perfect subtree (level, index) in ``audit_nodes``: level-major order."""
    return level << _IDX_BITS | index


def node_of(key: int) -> Node:
    return key >> _IDX_BITS, key & ((1 << _IDX_BITS) - 1)


def configure_sqlite(engine: Engine) -> Engine:
    """Make a SQLite engine safe for concurrent appends: ``BEGIN IMMEDIATE``, a busy wait, WAL.

    Without it, two transactions that both read before writing can deadlock on
    SQLite's lock upgrade. No-op for other databases.
    """
    if engine.dialect.name != "sqlite":
        return engine

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def split_frontier(blob: bytes) -> list[bytes]:
    if len(blob) % HASH_LEN:
        raise AuditError("the stored frontier is not a whole number of hashes")
    return [blob[i : i + HASH_LEN] for i in range(0, len(blob), HASH_LEN)]


class AuditLog:
    """The node's audit log in ``engine``'s database (tables in :data:`audit_metadata`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_tables(self) -> None:
        """Create the tables and the state row if missing (Alembic users: :meth:`initialise`)."""
        audit_metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            self.initialise(conn)

    @staticmethod
    def initialise(conn: Connection) -> None:
        """Insert the empty log's state row unless it is there."""
        if conn.execute(select(state_table.c.id)).first() is None:
            conn.execute(insert(state_table).values(id=_STATE_ID, size=0, frontier=b""))

    # -- appends ---------------------------------------------------------------------
    @staticmethod
    def _lock_state(conn: Connection) -> tuple[int, list[bytes]]:
        if not conn.in_transaction():
            raise ConfigError("conn", "append needs a transaction", "use `with engine.begin()`")
        q = select(state_table.c.size, state_table.c.frontier).where(state_table.c.id == _STATE_ID)
        if conn.dialect.name == "sqlite":  # a write takes SQLite's database lock first
            conn.execute(
                update(state_table)
                .where(state_table.c.id == _STATE_ID)
                .values(size=state_table.c.size)
            )
        else:
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None:
            raise ConfigError(
                "audit_state", "the audit log is not initialised", "call AuditLog.create_tables()"
            )
        return int(row.size), split_frontier(bytes(row.frontier))

    def append(self, conn: Connection, event: Event) -> int:
        """Record ``event`` in the caller's transaction; return its sequence number."""
        return self.append_many(conn, [event])[0]

    def append_many(self, conn: Connection, events: Sequence[Event]) -> list[int]:
        """Record ``events`` in order in the caller's transaction (a group commit)."""
        for i, ev in enumerate(events):
            if not isinstance(ev, Event):
                raise ConfigError(f"events[{i}]", f"is a {type(ev).__name__}, not an Event")
        if not events:
            return []
        size, frontier = self._lock_state(conn)
        start, t = size, now()
        rows: list[dict[str, Any]] = []
        nodes: list[dict[str, Any]] = []
        for ev in events:
            data = canonical_record(ev.record(size, t))
            leaf = leaf_hash(data)
            for (level, idx), h in push_leaf(frontier, size, leaf):
                nodes.append({"id": node_id(level, idx), "hash": h})
            rows.append(
                {
                    "seq": size,
                    "kind": ev.kind.value,
                    "job": ev.job,
                    "time": ev.time or t,
                    "entry": data,
                    "leaf": leaf,
                }
            )
            size += 1
        conn.execute(insert(entries_table), rows)
        if nodes:
            conn.execute(insert(nodes_table), nodes)
        conn.execute(
            update(state_table)
            .where(state_table.c.id == _STATE_ID)
            .values(size=size, frontier=b"".join(frontier))
        )
        return list(range(start, size))

    # -- heads -----------------------------------------------------------------------
    @staticmethod
    def current(conn: Connection) -> tuple[int, bytes]:
        """The log's (size, root) as stored."""
        row = conn.execute(
            select(state_table.c.size, state_table.c.frontier).where(state_table.c.id == _STATE_ID)
        ).first()
        if row is None:
            raise ConfigError("audit_state", "the audit log is not initialised")
        return int(row.size), root_of_frontier(split_frontier(bytes(row.frontier)))

    def sign_head(self, conn: Connection, key: NodeKey) -> SignedHead:
        """Sign the current head, store it, and return it (call after each job event batch)."""
        size, frontier = self._lock_state(conn)
        head = sign(key, size, root_of_frontier(frontier), now())
        conn.execute(
            insert(heads_table).values(
                node=head.node,
                size=head.size,
                root=head.root,
                time=head.time,
                signature=head.signature,
            )
        )
        return head

    @staticmethod
    def heads(conn: Connection) -> list[SignedHead]:
        """Every signed head this node stored, by size then signing order."""
        rows = conn.execute(
            select(heads_table).order_by(heads_table.c.size, heads_table.c.id)
        ).all()
        return [
            SignedHead(r.node, int(r.size), bytes(r.root), r.time, bytes(r.signature)) for r in rows
        ]

    # -- proofs ----------------------------------------------------------------------
    @staticmethod
    def nodes(conn: Connection, wanted: Iterable[Node]) -> dict[Node, bytes]:
        """Stored hashes of perfect subtrees: level 0 from the entries, the rest from nodes."""
        wanted = set(wanted)
        out: dict[Node, bytes] = {}
        leaves = [i for lv, i in wanted if lv == 0]
        inner = [(lv, i) for lv, i in wanted if lv > 0]
        if leaves:
            q1 = select(entries_table.c.seq, entries_table.c.leaf)
            for r in conn.execute(q1.where(entries_table.c.seq.in_(leaves))):
                out[(0, int(r.seq))] = bytes(r.leaf)
        if inner:
            q2 = select(nodes_table.c.id, nodes_table.c.hash)
            ids = [node_id(lv, i) for lv, i in inner]
            for r2 in conn.execute(q2.where(nodes_table.c.id.in_(ids))):
                out[node_of(int(r2.id))] = bytes(r2.hash)
        return out

    def _check_size(self, conn: Connection, size: int | None) -> int:
        current, _ = self.current(conn)
        if size is None:
            return current
        if not 0 < size <= current:
            raise ConfigError("size", f"{size} is not a tree size of this log (1..{current})")
        return size

    def inclusion_proof(
        self, conn: Connection, seq: int, size: int | None = None
    ) -> tuple[bytes, list[bytes]]:
        """(leaf hash, audit path) of entry ``seq`` in the tree of ``size`` (default: now)."""
        n = self._check_size(conn, size)
        if not 0 <= seq < n:
            raise ConfigError("seq", f"{seq} is not an entry of a log of {n}")
        hashes = self._resolve(conn, [(seq, seq + 1), *inclusion_ranges(seq, n)])
        return hashes[0], hashes[1:]

    def consistency_proof(self, conn: Connection, old: int, new: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof from tree size ``old`` to ``new`` (default: now)."""
        n = self._check_size(conn, new)
        if not 0 < old <= n:
            raise ConfigError("old", f"{old} is not a tree size from 1 to {n}")
        if old == n:
            return []
        return self._resolve(conn, consistency_ranges(old, n))

    def _resolve(self, conn: Connection, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        try:
            return resolve(ranges, lambda ks: self.nodes(conn, ks))
        except LookupError as e:
            raise AuditError(str(e)) from None

    def root_at(self, conn: Connection, size: int) -> bytes:
        """The root of the first ``size`` entries, from stored nodes."""
        self._check_size(conn, size)
        return self._resolve(conn, [(0, size)])[0]


def sign_head(conn: Connection, key: NodeKey) -> SignedHead:
    """Sign and store the current head of the log in ``conn``'s database."""
    return AuditLog(conn.engine).sign_head(conn, key)
