"""Recompute a log from its entries and say where it was tampered with.

:class:`Checker` is fed the entries in storage order and the signed heads; it
recomputes every leaf hash and the tree, and reports each check that fails with the
first entry it concerns: a *deleted* entry leaves a gap in the sequence, a
*reordered* or moved one carries a ``seq`` that differs from its place, an *edited*
one no longer hashes to its stored leaf hash (or to a signed head's root), an
*inserted* one lies beyond the tree the log's state or its heads describe.
:func:`verify_log` runs it over a database; the export verifier over a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

from cryptography import x509
from sqlalchemy import Connection, select

from veil.audit.events import EventKind, event_of_record
from veil.audit.heads import AuditError, SignedHead, verify_head
from veil.audit.merkle import push_leaf, root_of_frontier
from veil.audit.store import (
    AuditLog,
    entries_table,
    node_of,
    nodes_table,
    state_table,
)
from veil.errors import ConfigError

MAX_FINDINGS = 100
_WITNESS_KIND = b'"kind":"head.witnessed"'
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class Finding:
    """One failed check: the first entry it concerns (None: the log as a whole) and why."""

    seq: int | None
    check: str
    message: str
    exact: bool = True  # False: the problem lies somewhere in a range starting at ``seq``

    def __str__(self) -> str:
        where = f"entry {self.seq}" if self.seq is not None else "log"
        return f"{where}: [{self.check}] {self.message}"


@dataclass
class Report:
    """What a verification found. ``ok`` when no check failed."""

    size: int = 0
    heads: int = 0
    witnessed: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, seq: int | None, check: str, message: str, exact: bool = True) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(seq, check, message, exact))

    @property
    def first(self) -> Finding | None:
        if not self.findings:
            return None
        return min(self.findings, key=lambda f: (not f.exact, f.seq is None, f.seq or 0))

    def summary(self) -> str:
        head = f"{self.size} entries, {self.heads} signed heads, {self.witnessed} witnessed heads"
        if self.ok:
            return f"OK: {head}" + "".join(f"\nnote: {n}" for n in self.notes)
        lines = [f"FAILED: {head}", f"first problem: {self.first}"]
        lines += [f"  {f}" for f in self.findings if f is not self.first][:20]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


class Checker:
    """Recomputes a log entry by entry; keeps every completed tree node for comparison."""

    def __init__(
        self,
        report: Report,
        heads: list[SignedHead],
        witnessed: Iterable[SignedHead] = (),
        *,
        deep: bool = False,
    ) -> None:
        self.report = report
        self.deep = deep
        self.signed_size = max((h.size for h in heads), default=0)
        self.heads_at: dict[int, list[tuple[SignedHead, bool]]] = {}
        for h in heads:
            self.heads_at.setdefault(h.size, []).append((h, False))
        for h in witnessed:
            self.heads_at.setdefault(h.size, []).append((h, True))
        self.pos = 0
        self.frontier: list[bytes] = []
        self.levels: dict[int, bytearray] = {}
        self.good_sizes: list[int] = []
        self.witness_records: list[tuple[int, dict[str, Any]]] = []
        self.broken = False  # after a gap the recomputed tree means nothing
        for h, w in self.heads_at.get(0, []):
            self._check_head(h, w)

    def feed(self, seq: int, data: bytes, stored_leaf: bytes | None = None) -> bytes:
        """Check one entry stored at ``seq``; return its recomputed leaf hash.

        Every entry's hash and ``seq`` are checked. Its JSON form and schema are
        re-validated when ``deep``, when it does not match its stored leaf hash, when no
        signed head covers it, or when it is a witnessed head. An entry that matches its
        leaf and a signed head is byte for byte what the node validated and signed.
        """
        rep = self.report
        if seq != self.pos:
            if seq > self.pos:
                rep.add(
                    self.pos, "sequence", f"entries {self.pos}..{seq - 1} are missing (deleted)"
                )
            else:
                rep.add(seq, "sequence", f"entry {seq} appears twice or out of order")
            self.pos, self.broken = seq, True
        leaf = sha256(b"\x00" + data).digest()
        if stored_leaf is not None and stored_leaf != leaf:
            rep.add(
                seq, "leaf hash", "the entry no longer hashes to the leaf hash stored at append"
            )
            self._check_record(seq, data)
        elif self.deep or seq >= self.signed_size or _WITNESS_KIND in data:
            self._check_record(seq, data)
        else:
            at = data.rfind(b',"seq":')
            end = data.find(b",", at + 7)
            try:
                said = int(data[at + 7 : end]) if at >= 0 and end > 0 else None
            except ValueError:
                said = None
            if said != seq:
                self._check_record(seq, data)
        self.pos += 1
        if self.broken:
            return leaf
        for (level, _), h in push_leaf(self.frontier, self.pos - 1, leaf):
            self.levels.setdefault(level, bytearray()).extend(h)
        for head, w in self.heads_at.get(self.pos, []):
            self._check_head(head, w)
        return leaf

    def _check_record(self, seq: int, data: bytes) -> None:
        rep = self.report
        try:
            rec = json.loads(data.decode("utf-8"))
            if _ENCODER.encode(rec).encode("utf-8") != data:
                rep.add(seq, "canonical form", "the entry is not canonical JSON (edited)")
            if rec.get("seq") != seq:
                rep.add(
                    seq, "entry seq", f"stored at {seq} but says seq {rec.get('seq')!r} (reordered)"
                )
            event_of_record(rec)
            if rec["kind"] == EventKind.HEAD_WITNESSED.value:
                self.witness_records.append((seq, rec))
        except (ValueError, AttributeError) as e:  # ConfigError is a ValueError
            detail = str(e) if isinstance(e, ConfigError) else "not JSON"
            rep.add(seq, "schema", f"the entry is not a valid audit record: {detail}")

    def _check_head(self, head: SignedHead, witnessed: bool) -> None:
        if root_of_frontier(self.frontier) == head.root:
            self.good_sizes.append(head.size)
            return
        good = max((g for g in self.good_sizes if g < head.size), default=0)
        who = "a partner witnessed" if witnessed else "the node signed"
        self.report.add(
            good,
            "witnessed head" if witnessed else "signed head",
            f"entries {good}..{head.size - 1} do not hash to the root {who} "
            f"at {head.time} for size {head.size}: one of them was changed",
            exact=False,
        )

    def finish(self, size: int | None) -> None:
        """After the last entry: compare with the stored tree size and every head."""
        rep = self.report
        rep.size = self.pos
        if size is not None and self.pos > size:
            rep.add(
                size, "tree size", f"entries {size}..{self.pos - 1} were inserted outside an append"
            )
        elif size is not None and self.pos < size:
            rep.add(
                self.pos, "tree size", f"the tree has {size} entries but the log ends at {self.pos}"
            )
        for s, hs in sorted(self.heads_at.items()):
            if s > self.pos:
                check = "witnessed head" if any(w for _, w in hs) else "head size"
                rep.add(
                    self.pos,
                    check,
                    f"a head of size {s} exists but the log has {self.pos} "
                    "entries: it was truncated",
                )
        signed = max((s for s, hs in self.heads_at.items() if any(not w for _, w in hs)), default=0)
        if self.pos > signed:
            rep.notes.append(
                f"entries {signed}..{self.pos - 1} are not yet covered by a signed head"
            )

    def check_witnesses(self, ca: x509.Certificate | None) -> None:
        self.report.witnessed = len(self.witness_records)
        if ca is None:
            return
        for seq, rec in self.witness_records:
            p = rec["payload"]
            try:
                verify_head(SignedHead.from_dict(p), p["cert"], ca)
            except AuditError as e:
                self.report.add(seq, "witness signature", str(e))


def check_heads(
    report: Report, heads: Iterable[SignedHead], cert: x509.Certificate | None, ca: Any
) -> None:
    """Verify each head's signature (when a cert and CA are given)."""
    if cert is None or ca is None:
        report.notes.append("head signatures not checked (no certificate/CA given)")
        return
    for h in heads:
        try:
            verify_head(h, cert, ca)
        except AuditError as e:
            report.add(h.size, "head signature", str(e))


def verify_log(
    conn: Connection,
    *,
    cert: x509.Certificate | None = None,
    ca: x509.Certificate | None = None,
    witnessed: Iterable[SignedHead] = (),
    deep: bool = False,
) -> Report:
    """Recompute the whole log in the database and report every check that fails.

    ``deep`` re-validates every entry's JSON form and schema, not only those that no
    signed head vouches for (see :meth:`Checker.feed`).
    """
    report = Report()
    row = conn.execute(select(state_table.c.size, state_table.c.frontier)).first()
    if row is None:
        report.add(None, "state", "the audit log has no state row (never initialised or wiped)")
        return report
    size, stored_frontier = int(row.size), bytes(row.frontier)
    heads = AuditLog.heads(conn)
    report.heads = len(heads)
    check_heads(report, heads, cert, ca)
    checker = Checker(report, heads, witnessed, deep=deep)
    q = select(entries_table.c.seq, entries_table.c.entry, entries_table.c.leaf).order_by(
        entries_table.c.seq
    )
    feed = checker.feed
    for seq, entry, leaf in conn.execution_options(yield_per=20_000).execute(q):
        feed(seq, bytes(entry), bytes(leaf))
    checker.finish(size)
    if checker.broken:
        return report
    if checker.pos == size and b"".join(checker.frontier) != stored_frontier:
        report.add(None, "state", "the stored frontier does not match the entries")
    _check_nodes(conn, checker)
    checker.check_witnesses(ca)
    return report


def _check_nodes(conn: Connection, checker: Checker) -> None:
    """Compare the stored interior nodes, level by level, with the recomputed ones."""
    q = select(nodes_table.c.id, nodes_table.c.hash).order_by(nodes_table.c.id)
    stored: dict[int, int] = {}  # level -> how many nodes of it were stored
    chunk: list[bytes] = []
    level = start = -1

    def flush() -> None:
        if not chunk:
            return
        got = b"".join(chunk)
        arr = memoryview(checker.levels.get(level, bytearray()))
        want = bytes(arr[start * 32 : (start + len(chunk)) * 32])
        if got != want:
            i = next(
                (k for k in range(len(chunk)) if chunk[k] != want[k * 32 : k * 32 + 32]),
                len(chunk),
            )
            idx = start + i
            checker.report.add(
                idx << level,
                "tree node",
                f"the stored hash of entries {idx << level}..{((idx + 1) << level) - 1} "
                "does not match them",
                exact=False,
            )
        chunk.clear()

    for nid, h in conn.execution_options(yield_per=20_000).execute(q):
        lv, idx = node_of(int(nid))
        n = stored.get(lv, 0)
        if lv != level or len(chunk) >= 4096 or idx != start + len(chunk):
            flush()
            level, start = lv, idx
        if idx != n:
            checker.report.add(idx << lv, "tree node", f"tree nodes of level {lv} are missing")
        stored[lv] = idx + 1
        chunk.append(bytes(h))
    flush()
    for lv, arr in checker.levels.items():
        if stored.get(lv, 0) != len(arr) // 32:
            checker.report.add(
                None,
                "tree node",
                f"level {lv}: {len(arr) // 32} nodes expected, {stored.get(lv, 0)} stored",
            )
