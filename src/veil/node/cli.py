"""``veil node``, ``veil dataset`` and ``veil job``: run a node and drive it.

``veil node init|start|token|peers`` act on a node folder; ``veil dataset`` and
``veil job`` talk to the node's API with the address and token found in ``--node DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from veil.errors import ConfigError
from veil.node.client import Client

EXIT_FAILED = 1
# ``veil node ACTION DIR``: API path and help (the dashboard reads the same endpoints)
NODE_VIEWS = {
    "whoami": ("/whoami", "the node and the role of the token"),
    "events": ("/events", "the node's event log"),
    "policy": ("/policy", "the node's auto-approve rules"),
    "audit-status": ("/audit/verify", "recompute the audit log through the API (auditor)"),
}
JOB_VIEWS = ("proposal", "parties", "report", "log", "model")


def add_parser(subparsers: Any) -> None:
    """Add ``node``, ``dataset`` and ``job`` to the ``veil`` command line."""
    node = subparsers.add_parser("node", help="set up and run a Veil node")
    ns = node.add_subparsers(dest="node_command", metavar="ACTION", required=True)
    p = ns.add_parser("init", help="make a node folder: node.toml, certificate, admin token")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--name", required=True, help="the node's party name")
    p.add_argument(
        "--ca",
        required=True,
        type=Path,
        help="the federation CA folder (veil ca init), or this node's certificate folder "
        "from 'veil ca issue NAME --out DIR'",
    )
    p.add_argument("--peer-listen", default="127.0.0.1:7400", metavar="HOST:PORT")
    p.add_argument("--api", default="127.0.0.1:7500", metavar="HOST:PORT")
    p.add_argument("--peer", action="append", default=[], metavar="NAME=HOST:PORT")
    p.add_argument("--database", default="", metavar="URL", help="default: SQLite in DIR")
    p.set_defaults(func=_init)
    p = ns.add_parser("start", help="run the node until SIGINT/SIGTERM")
    p.add_argument("dir", metavar="DIR")
    p.set_defaults(func=_start)
    p = ns.add_parser("token", help="issue an API token")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--role", required=True, choices=("operator", "approver", "auditor"))
    p.set_defaults(func=_token)
    p = ns.add_parser("peers", help="each peer's liveness, round-trip time, cert expiry")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_peers)
    for action, (_, about) in NODE_VIEWS.items():
        p = ns.add_parser(action, help=about)
        p.add_argument("dir", metavar="DIR")
        p.add_argument(
            "--token", help="an API token (default: $VEIL_NODE_TOKEN or DIR/admin.token)"
        )
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=_node_view, action=action)

    ds = subparsers.add_parser("dataset", help="register and list a node's datasets")
    dss = ds.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    p = dss.add_parser("add", help="register FILE (CSV or Parquet) as dataset NAME")
    _node_arg(p)
    p.add_argument("name", metavar="NAME")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--id", required=True, metavar="COL")
    p.add_argument("--label", metavar="COL")
    p.set_defaults(func=_dataset_add)
    p = dss.add_parser("list", help="the registered datasets")
    _node_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_dataset_list)

    job = subparsers.add_parser("job", help="submit and follow cross-node jobs")
    js = job.add_subparsers(dest="job_command", metavar="ACTION", required=True)
    p = js.add_parser("submit", help="propose JOB to every party's node; prints the job id")
    _node_arg(p)
    p.add_argument("job", metavar="JOB.yaml")
    p.set_defaults(func=_submit)
    for action, helptext in (
        ("list", "every job this node knows"),
        ("status", "votes, steps, state"),
        ("logs", "the job's events"),
        ("outputs", "this node's output files"),
        ("approve", "approve the job (approver)"),
        ("cancel", "stop the job on every party (operator)"),
        ("reject", "reject the job (approver)"),
        ("proposal", "the proposal in readable form and this node's policy decision"),
        ("parties", "each party's own step seconds and bytes (asked of its node)"),
        ("report", "this node's run report: steps, errors, traffic (operator)"),
        ("log", "this node's worker log (operator)"),
        ("model", "this party's model report: metrics and curves (operator)"),
    ):
        p = js.add_parser(action, help=helptext)
        _node_arg(p)
        if action != "list":
            p.add_argument("id", metavar="ID")
        if action == "reject":
            p.add_argument("--reason", required=True)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=_job_action, action=action)


def _node_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", required=True, metavar="DIR", help="the node folder")
    p.add_argument("--token", help="an API token (default: $VEIL_NODE_TOKEN or DIR/admin.token)")


def _init(args: argparse.Namespace) -> int:
    from veil.node.admin import init_node

    peers: dict[str, str] = {}
    for item in args.peer:
        name, sep, addr = item.partition("=")
        if not sep:
            raise ConfigError(
                "--peer", f"'{item}' is not NAME=HOST:PORT", "e.g. bank=10.0.0.1:7400"
            )
        peers[name] = addr
    cfg = init_node(
        args.dir,
        name=args.name,
        ca_dir=args.ca,
        peer_listen=args.peer_listen,
        api=args.api,
        peers=peers,
        database=args.database,
    )
    print(f"node {cfg.name} in {cfg.dir}; admin token in {cfg.dir / 'admin.token'}")
    return 0


def _start(args: argparse.Namespace) -> int:
    from veil.node.daemon import start_node

    return start_node(args.dir)


def _token(args: argparse.Namespace) -> int:
    from veil.node.admin import issue_token, open_store
    from veil.node.config import load_config

    store = open_store(load_config(args.dir))
    try:
        print(issue_token(store, args.role))
    finally:
        store.close()
    return 0


def _peers(args: argparse.Namespace) -> int:
    c = Client(args.dir)
    rows = c.request("GET", "/peers")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = "alive" if r["alive"] else "DOWN"
        rtt = "-" if r["rtt_ms"] is None else f"{r['rtt_ms']:.1f} ms"
        print(
            f"{r['name']:<16} {r['address']:<22} {state:<6} rtt {rtt:<10} "
            f"cert expires {r['cert_expires'] or '?'}"
        )
    return 0


def _node_view(args: argparse.Namespace) -> int:
    out = Client(args.dir, args.token).request("GET", NODE_VIEWS[args.action][0])
    if args.json or args.action in ("policy", "whoami"):
        print(json.dumps(out, indent=2))
    elif args.action == "events":
        _show("logs", out)
    else:
        print(out["summary"])
        return 0 if out["ok"] else EXIT_FAILED
    return 0


def _dataset_add(args: argparse.Namespace) -> int:
    c = Client(args.node, args.token)
    body = {
        "name": args.name,
        "path": str(Path(args.file).resolve()),
        "id": args.id,
        "label": args.label,
    }
    d = c.request("POST", "/datasets", body)
    print(
        f"dataset {d['name']}: {d['rows']} rows, {len(d['columns'])} columns, sha256 {d['sha256']}"
    )
    return 0


def _dataset_list(args: argparse.Namespace) -> int:
    rows = Client(args.node, args.token).request("GET", "/datasets")
    if args.json:
        print(json.dumps(rows, indent=2))
    for d in [] if args.json else rows:
        print(f"{d['name']:<24} {d['rows']:>10} rows  id={d['id_col']} label={d['label_col']}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    path = Path(args.job)
    if not path.is_file():
        raise ConfigError("JOB", f"no job file at '{path}'", "check the path")
    st = Client(args.node, args.token).request("POST", "/jobs", {"text": path.read_text("utf-8")})
    print(st["id"])
    if st["state"] == "failed":
        print(f"veil: job {st['id']} failed: {st['error']}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _job_action(args: argparse.Namespace) -> int:
    c = Client(args.node, args.token)
    a = args.action
    if a == "list":
        out = c.request("GET", "/jobs")
    elif a == "status":
        out = c.request("GET", f"/jobs/{args.id}")
    elif a == "logs":
        out = c.request("GET", f"/jobs/{args.id}/events")
    elif a == "outputs":
        out = c.request("GET", f"/jobs/{args.id}/outputs")
    elif a in JOB_VIEWS:
        out = c.request("GET", f"/jobs/{args.id}/{a}")
    elif a == "reject":
        out = c.request("POST", f"/jobs/{args.id}/reject", {"reason": args.reason})
    else:
        out = c.request("POST", f"/jobs/{args.id}/{a}")
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _show(a, out)
    return 0


def _show(action: str, out: Any) -> None:
    if action == "log":
        print(out["log"], end="")
    elif action in JOB_VIEWS:
        print(json.dumps(out, indent=2))
    elif action == "list":
        for j in out:
            print(f"{j['id']}  {j['state']:<10} {j['name']:<24} from {j['initiator']}")
    elif action == "logs":
        for e in out:
            print(f"{e['at']:.3f} {e['kind']:<16} {e['actor']:<20} {json.dumps(e['detail'])}")
    elif action == "outputs":
        for f in out["files"]:
            print(f"{f['sha256'][:16]}  {f['size']:>10}  {f['path']}")
    else:
        print(
            f"job {out['id']} ({out['name']}): {out['state']}"
            + (f": {out['error']}" if out.get("error") else "")
        )
        for p, v in out["parties"].items():
            print(f"  {p:<16} {v['vote']:<9} {v['reason']}")
        for s in out["steps"]:
            print(
                f"  step {s['index']} {s['name']:<12} {s['state']:<8} "
                f"{100 * s['progress']:5.1f}% {s['seconds']:8.2f} s {s['bytes']:>12} B"
            )
