"""``veil audit``: verify, export and prove a node's tamper-evident audit log.

veil audit verify --node DIR [--deep] [--witness OTHER.jsonl ...]
veil audit verify FILE.jsonl [FILE.jsonl ...] --ca ca.crt [--job ID] [--witness OTHER.jsonl ...]
veil audit export --node DIR --out FILE.jsonl [--job ID] [--since T]
veil audit prove --node DIR SEQ [--size N]

Several exports (one per party) are verified each with the others as its witnesses;
then every job they share (or ``--job ID``) is listed as each party's log tells it
(datasets and columns, outputs, bytes per peer) and the logs are checked to agree on it
(:mod:`veil.audit.jobs`). ``--node DIR`` reads the folder ``veil node init`` made
(see :mod:`veil.audit.config`). Exit 0 when
the log verifies, 1 when a check fails (the first failing entry is named), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine

from veil.audit.config import NodeFiles, read_node_dir
from veil.audit.events import parse_time
from veil.audit.export import export_log, verify_export, witnessed_in
from veil.audit.heads import NodeKey, SignedHead, cert_name, load_cert, load_node_key
from veil.audit.jobs import describe, disagreements, job_views
from veil.audit.store import AuditLog, configure_sqlite
from veil.audit.verify import Report, verify_log
from veil.errors import ConfigError


def add_parser(subparsers: Any) -> None:
    """Register ``veil audit`` on the top-level subparsers."""
    p = subparsers.add_parser("audit", help="verify, export and prove the audit log")
    sub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    v = sub.add_parser("verify", help="recompute a node's log, or check an export offline")
    v.add_argument(
        "files", nargs="*", type=Path, metavar="FILE.jsonl", help="exports (one per party)"
    )
    v.add_argument("--job", metavar="ID", help="list and cross-check this job only")
    v.add_argument("--node", type=Path, metavar="DIR", help="the node directory")
    v.add_argument("--ca", type=Path, metavar="CA.crt", help="the federation CA certificate")
    v.add_argument(
        "--witness",
        type=Path,
        action="append",
        default=[],
        metavar="OTHER.jsonl",
        help="a partner's export: the heads of this node it witnessed are checked too",
    )
    v.add_argument(
        "--deep",
        action="store_true",
        help="re-validate every entry's JSON and schema, also those a signed head vouches for",
    )
    v.set_defaults(func=_verify)

    e = sub.add_parser("export", help="write entries, signed heads and proofs for an auditor")
    e.add_argument("--node", type=Path, required=True, metavar="DIR")
    e.add_argument("--out", type=Path, required=True, metavar="FILE.jsonl")
    e.add_argument("--job", metavar="ID", help="only this job's entries (plus witnessed heads)")
    e.add_argument("--since", metavar="T", help="only entries at or after T (RFC 3339 UTC)")
    e.set_defaults(func=_export)

    pr = sub.add_parser("prove", help="print an inclusion proof of entry SEQ")
    pr.add_argument("--node", type=Path, required=True, metavar="DIR")
    pr.add_argument("seq", type=int, metavar="SEQ")
    pr.add_argument("--size", type=int, help="tree size (default: the latest signed head)")
    pr.set_defaults(func=_prove)


def _engine(files: NodeFiles) -> Engine:
    try:
        return configure_sqlite(create_engine(files.database))
    except Exception as e:
        raise ConfigError("database", f"cannot open {files.database!r}: {e}") from None


def _key(files: NodeFiles) -> NodeKey | None:
    if files.cert is None or files.key is None:
        return None
    return load_node_key(files.cert, files.key)


def _ca(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return load_cert(path.read_bytes(), "--ca")
    except OSError as e:
        raise ConfigError("--ca", f"cannot read {path}: {e}") from None


def _print(report: Report) -> int:
    print(report.summary())
    return 0 if report.ok else 1


def _verify(args: argparse.Namespace) -> int:
    if bool(args.files) == (args.node is not None):
        raise ConfigError("verify", "give either FILE.jsonl ... or --node DIR", "not both")
    if args.files:
        ca = _ca(args.ca)
        if ca is None:
            raise ConfigError("--ca", "offline verification needs the federation CA certificate")
        return _verify_files(args.files, ca, args.witness, args.job)
    files = read_node_dir(args.node)
    ca = _ca(args.ca or files.ca)
    cert = load_cert(files.cert.read_bytes()) if files.cert and files.cert.is_file() else None
    witnessed: list[SignedHead] = []
    if args.witness:
        if cert is None or ca is None:
            raise ConfigError("--witness", "checking witnesses needs the node's cert and the CA")
        for w in args.witness:
            witnessed += witnessed_in(w, cert_name(cert), ca)
    engine = _engine(files)
    with engine.connect() as conn:
        report = verify_log(conn, cert=cert, ca=ca, witnessed=witnessed, deep=args.deep)
    return _print(report)


def _verify_files(files: list[Path], ca: Any, witness: list[Path], job: str | None) -> int:
    ok = True
    for f in files:
        others = [g for g in files if g != f]
        report = verify_export(f, ca, [*others, *witness])
        ok = ok and report.ok
        text = report.summary()
        print(f"{f}: {text}" if len(files) > 1 else text)
    if len(files) == 1 and job is None:
        return 0 if ok else 1
    views = job_views(files)
    jobs = [job] if job is not None else [j for j, v in views.items() if len(v) > 1]
    for j in jobs:
        if j not in views:
            print(f"job {j}: in none of the exports")
            ok = False
            continue
        print("\n".join(describe(j, views[j])))
        if len(views[j]) < len(files):
            missing = len(files) - len(views[j])
            print(f"  note: {missing} of the exports do not mention the job")
        problems = disagreements(views[j])
        for p in problems:
            print(f"  DISAGREE: {p}")
        if not problems:
            print(f"  the {len(views[j])} logs agree on job {j}")
        ok = ok and not problems
    return 0 if ok else 1


def _export(args: argparse.Namespace) -> int:
    if args.since is not None:
        try:
            parse_time(args.since)
        except ValueError:
            raise ConfigError(
                "--since", f"{args.since!r} is not a time", "e.g. 2026-01-01T00:00:00.000000Z"
            ) from None
    files = read_node_dir(args.node)
    engine = _engine(files)
    key = _key(files)
    with engine.begin() as conn:
        info = export_log(conn, args.out, key=key, job=args.job, since=args.since)
    kind = "complete" if info["complete"] else "partial"
    print(
        f"exported {info['entries']} entries ({kind}) of {info['node']}'s log, "
        f"signed head of size {info['size']}: {args.out}"
    )
    return 0


def _prove(args: argparse.Namespace) -> int:
    files = read_node_dir(args.node)
    engine = _engine(files)
    log = AuditLog(engine)
    with engine.connect() as conn:
        heads = log.heads(conn)
        size = args.size
        if size is None:
            size = heads[-1].size if heads and heads[-1].size > args.seq else None
        leaf, path = log.inclusion_proof(conn, args.seq, size)
        n = size if size is not None else log.current(conn)[0]
        root = log.root_at(conn, n)
    head = next((h for h in reversed(heads) if h.size == n and h.root == root), None)
    out = {
        "seq": args.seq,
        "size": n,
        "leaf_hash": leaf.hex(),
        "path": [h.hex() for h in path],
        "root": root.hex(),
        "signed_head": head.to_dict() if head else None,
    }
    print(json.dumps(out, indent=2))
    return 0
