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
from typing import Any

from cryptography import x509
from sqlalchemy import Connection, select

from veil.audit.events import EventKind, event_of_record
from veil.audit.heads import AuditError, SignedHead, verify_head
from veil.audit.merkle import leaf_hash, push_leaf, root_of_frontier
from veil.audit.store import (
    AuditLog,
    entries_table,
    node_of,
    nodes_table,
    state_table,
)
from veil.errors import ConfigError

MAX_FINDINGS = 100


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
        self, report: Report, heads: list[SignedHead], witnessed: Iterable[SignedHead] = ()
    ) -> None:
        self.report = report
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
        """Check one entry stored at ``seq``; return its recomputed leaf hash."""
        rep = self.report
        if seq != self.pos:
            if seq > self.pos:
                rep.add(
                    self.pos, "sequence", f"entries {self.pos}..{seq - 1} are missing (deleted)"
                )
            else:
                rep.add(seq, "sequence", f"entry {seq} appears twice or out of order")
            self.pos, self.broken = seq, True
        try:
            rec = json.loads(data.decode("utf-8"))
            canon = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            if canon.encode("utf-8") != data:
                rep.add(seq, "canonical form", "the entry is not canonical JSON (edited)")
            if rec.get("seq") != seq:
                rep.add(
                    seq, "entry seq", f"stored at {seq} but says seq {rec.get('seq')!r} (reordered)"
                )
            event_of_record(rec)
            if rec["kind"] == EventKind.HEAD_WITNESSED.value:
                self.witness_records.append((seq, rec))
        except (ValueError, AttributeError) as e:  # ConfigError is a ValueError
            detail = e.problem if isinstance(e, ConfigError) else "not JSON"
            rep.add(seq, "schema", f"the entry is not a valid audit record: {detail}")
        leaf = leaf_hash(data)
        if stored_leaf is not None and stored_leaf != leaf:
            rep.add(
                seq, "leaf hash", "the entry no longer hashes to the leaf hash stored at append"
            )
        self.pos += 1
        if self.broken:
            return leaf
        for (level, _), h in push_leaf(self.frontier, self.pos - 1, leaf):
            self.levels.setdefault(level, bytearray()).extend(h)
        for head, w in self.heads_at.get(self.pos, []):
            self._check_head(head, w)
        return leaf

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

    def node(self, level: int, idx: int) -> bytes | None:
        arr = self.levels.get(level)
        if arr is None or (idx + 1) * 32 > len(arr):
            return None
        return bytes(arr[idx * 32 : (idx + 1) * 32])

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
) -> Report:
    """Recompute the whole log in the database and report every check that fails."""
    report = Report()
    row = conn.execute(select(state_table.c.size, state_table.c.frontier)).first()
    if row is None:
        report.add(None, "state", "the audit log has no state row (never initialised or wiped)")
        return report
    size, stored_frontier = int(row.size), bytes(row.frontier)
    heads = AuditLog.heads(conn)
    report.heads = len(heads)
    check_heads(report, heads, cert, ca)
    checker = Checker(report, heads, witnessed)
    q = select(entries_table.c.seq, entries_table.c.entry, entries_table.c.leaf).order_by(
        entries_table.c.seq
    )
    for r in conn.execution_options(yield_per=5000).execute(q):
        checker.feed(int(r.seq), bytes(r.entry), bytes(r.leaf))
    checker.finish(size)
    if checker.broken:
        return report
    if checker.pos == size and b"".join(checker.frontier) != stored_frontier:
        report.add(None, "state", "the stored frontier does not match the entries")
    q2 = select(nodes_table.c.id, nodes_table.c.hash).order_by(nodes_table.c.id)
    seen = 0
    for rn in conn.execution_options(yield_per=5000).execute(q2):
        level, idx = node_of(int(rn.id))
        seen += 1
        if checker.node(level, idx) != bytes(rn.hash):
            report.add(
                idx << level,
                "tree node",
                f"the stored hash of entries {idx << level}..{((idx + 1) << level) - 1} "
                "does not match them",
                exact=False,
            )
    expected = sum(len(a) // 32 for a in checker.levels.values())
    if seen != expected:
        report.add(None, "tree node", f"{expected} interior nodes expected, {seen} stored")
    checker.check_witnesses(ca)
    return report
