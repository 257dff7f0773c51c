"""Export a log for an auditor, and verify an export offline with only the CA certificate.

An export (JSON lines) holds: the node's certificate; every signed head, each with a
consistency proof to the final head; the entries (all, or those of one job / since
a time plus every witnessed partner head), each with an inclusion proof against the
final head when the export is partial. The verifier checks the certificate against
the CA, every head's signature, every proof, and recomputes the tree of a complete
export. Other nodes' exports passed as witnesses contribute the heads of this node
they recorded: each must be consistent with this log, or the log was rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from sqlalchemy import Connection, or_, select

from veil.audit.events import EventKind, event_of_record
from veil.audit.heads import (
    AuditError,
    NodeKey,
    SignedHead,
    cert_name,
    cert_pem,
    load_cert,
    verify_head,
)
from veil.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from veil.audit.store import AuditLog, entries_table
from veil.audit.verify import Checker, Report, check_heads
from veil.errors import ConfigError
from veil.fileio import write_atomic_with

FORMAT = "veil-audit-export/1"


def export_log(
    conn: Connection,
    out: Path,
    *,
    key: NodeKey | None,
    cert: x509.Certificate | None = None,
    job: str | None = None,
    since: str | None = None,
) -> dict[str, Any]:
    """Write the export to ``out``; sign a fresh head first when ``key`` is given."""
    log = AuditLog(conn.engine)
    size, _ = log.current(conn)
    heads = log.heads(conn)
    if key is not None and (not heads or heads[-1].size < size):
        heads.append(log.sign_head(conn, key))
    cert = key.cert if key is not None else cert
    if cert is None or not heads:
        raise ConfigError(
            "key", "the log has no signed head to export against", "give the node's cert and key"
        )
    final = heads[-1]
    complete = job is None and since is None
    q = select(entries_table.c.seq, entries_table.c.entry).where(entries_table.c.seq < final.size)
    if not complete:
        conds = [entries_table.c.kind == EventKind.HEAD_WITNESSED.value]
        if job is not None:
            conds.append(entries_table.c.job == job)
        if since is not None:
            conds.append(entries_table.c.time >= since)
        q = q.where(or_(*conds))
    meta = {
        "type": "log",
        "format": FORMAT,
        "node": final.node,
        "cert": cert_pem(cert),
        "size": final.size,
        "complete": complete,
        "job": job,
        "since": since,
    }
    count = 0

    def write(f: IO[bytes]) -> None:
        nonlocal count
        f.write(_line(meta))
        for h in heads:
            proof = log.consistency_proof(conn, h.size, final.size) if h.size else []
            f.write(_line({"type": "head", **h.to_dict(), "consistency": _hex(proof)}))
        for r in conn.execution_options(yield_per=5000).execute(q.order_by(entries_table.c.seq)):
            line: dict[str, Any] = {
                "type": "entry",
                "seq": int(r.seq),
                "entry": bytes(r.entry).decode("utf-8"),
            }
            if not complete:
                line["proof"] = _hex(log.inclusion_proof(conn, int(r.seq), final.size)[1])
            f.write(_line(line))
            count += 1

    write_atomic_with(Path(out), write)
    return {"node": final.node, "size": final.size, "entries": count, "complete": complete}


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n"


def _hex(hashes: Sequence[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def _unhex(v: Any, where: str) -> list[bytes]:
    if not isinstance(v, list) or not all(isinstance(x, str) and len(x) == 64 for x in v):
        raise ConfigError(where, "is not a list of SHA-256 hex hashes")
    try:
        return [bytes.fromhex(x) for x in v]
    except ValueError:
        raise ConfigError(where, "is not a list of SHA-256 hex hashes") from None


def _read(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with Path(path).open("rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    obj = json.loads(raw)
                except ValueError:
                    raise ConfigError(f"{path}:{n}", "is not a JSON line") from None
                if not isinstance(obj, dict) or obj.get("type") not in ("log", "head", "entry"):
                    raise ConfigError(f"{path}:{n}", "is not a log, head or entry line")
                yield n, obj
    except OSError as e:
        raise ConfigError(str(path), f"cannot read the export: {e}") from None


def witnessed_in(path: Path, node: str, ca: x509.Certificate) -> list[SignedHead]:
    """Heads of ``node`` recorded in another node's export, each signature-checked."""
    out: list[SignedHead] = []
    for n, obj in _read(path):
        if obj["type"] != "entry" or not isinstance(obj.get("entry"), str):
            continue
        rec = json.loads(obj["entry"])
        if rec.get("kind") != EventKind.HEAD_WITNESSED.value:
            continue
        p = rec.get("payload", {})
        head = SignedHead.from_dict(p, f"{path}:{n}")
        if head.node == node:
            verify_head(head, p["cert"], ca)
            out.append(head)
    return out


def verify_export(
    path: Path, ca: bytes | str | x509.Certificate, witnesses: Sequence[Path] = ()
) -> Report:
    """Check an export with only the CA (and optionally partners' exports as witnesses)."""
    ca_cert = load_cert(ca, "ca")
    lines = _read(path)
    first = next(lines, None)
    if first is None or first[1]["type"] != "log" or first[1].get("format") != FORMAT:
        raise ConfigError(str(path), f"does not start with a {FORMAT} header line")
    meta = first[1]
    cert = load_cert(str(meta.get("cert", "")), f"{path}:1.cert")
    node, complete, size = meta.get("node"), meta.get("complete"), meta.get("size")
    if node != cert_name(cert) or not isinstance(size, int) or not isinstance(complete, bool):
        raise ConfigError(f"{path}:1", "node, size or complete is missing or wrong")
    report = Report()
    heads: list[tuple[SignedHead, list[bytes]]] = []
    entries: list[tuple[int, dict[str, Any]]] = []
    for n, obj in lines:
        if obj["type"] == "head":
            heads.append(
                (
                    SignedHead.from_dict({k: v for k, v in obj.items() if k != "consistency"}),
                    _unhex(obj.get("consistency"), f"{path}:{n}.consistency"),
                )
            )
        elif obj["type"] == "entry":
            entries.append((n, obj))
    if not heads or heads[-1][0].size != size:
        raise ConfigError(str(path), f"has no final signed head of size {size}")
    final = heads[-1][0]
    report.heads = len(heads)
    check_heads(report, [h for h, _ in heads], cert, ca_cert)
    for h, proof in heads:
        if h.node != node:
            report.add(h.size, "head node", f"a head of {h.node!r} in the export of {node!r}")
        elif h.size and not verify_consistency(h.size, final.size, h.root, final.root, proof):
            report.add(
                h.size,
                "consistency",
                f"the head of size {h.size} ({h.time}) is not a prefix of the final head",
            )
    wit: list[SignedHead] = []
    for w in witnesses:
        try:
            wit += witnessed_in(w, str(node), ca_cert)
        except AuditError as e:
            report.add(None, "witness signature", f"{w}: {e}")
    checker = Checker(report, [h for h, _ in heads], witnessed=wit)
    for n, obj in entries:
        seq, text = obj.get("seq"), obj.get("entry")
        if not isinstance(seq, int) or not isinstance(text, str):
            raise ConfigError(f"{path}:{n}", "an entry line needs an integer seq and a string")
        data = text.encode("utf-8")
        if complete:
            checker.feed(seq, data)
            continue
        report.size += 1
        _check_partial_entry(
            report, checker, seq=seq, data=data, obj=obj, final=final, where=f"{path}:{n}"
        )
    if complete:
        checker.finish(size)
    else:
        _check_partial_witnesses(report, [h for h, _ in heads], wit)
    checker.check_witnesses(ca_cert)
    return report


def _check_partial_entry(
    report: Report,
    checker: Checker,
    *,
    seq: int,
    data: bytes,
    obj: dict[str, Any],
    final: SignedHead,
    where: str,
) -> None:
    try:
        rec = json.loads(data)
        event_of_record(rec)
        if rec["seq"] != seq:
            report.add(seq, "entry seq", f"says seq {rec['seq']} (reordered)")
        if rec["kind"] == EventKind.HEAD_WITNESSED.value:
            checker.witness_records.append((seq, rec))
    except (ValueError, KeyError, TypeError) as e:
        report.add(seq, "schema", f"not a valid audit record: {e}")
    path = _unhex(obj.get("proof"), f"{where}.proof")
    if not verify_inclusion(leaf_hash(data), seq, final.size, path, final.root):
        report.add(seq, "inclusion proof", "the entry is not in the signed tree (edited or forged)")


def _check_partial_witnesses(
    report: Report, heads: list[SignedHead], witnessed: list[SignedHead]
) -> None:
    known = {(h.size, h.root) for h in heads}
    for w in witnessed:
        if (w.size, w.root) not in known:
            report.add(
                None,
                "witnessed head",
                f"a partner holds this node's head of size {w.size} signed at {w.time}, which "
                "this log no longer contains: the log was rewritten or truncated",
            )
