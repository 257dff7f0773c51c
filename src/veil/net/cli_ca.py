"""``veil ca``: make a federation CA and issue party certificates.

veil ca init DIR [--name NAME] [--days N]
veil ca issue PARTY --ca DIR --out DIR [--host H ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from veil.errors import ConfigError
from veil.net.certs import init_ca, issue_party


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``veil ca`` on the top-level subparsers."""
    ca = subparsers.add_parser("ca", help="federation CA and party certificates")
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="ACTION", required=True)

    init = ca_sub.add_parser("init", help="create a federation CA in DIR")
    init.add_argument("dir", type=Path, metavar="DIR")
    init.add_argument("--name", default="veil-federation", help="CA name (default %(default)s)")
    init.add_argument("--days", type=int, default=3650, help="validity (default %(default)s)")
    init.set_defaults(func=_init)

    issue = ca_sub.add_parser("issue", help="issue PARTY a certificate signed by the CA")
    issue.add_argument("party", metavar="PARTY", help="party name, as used in jobs")
    issue.add_argument("--ca", type=Path, required=True, metavar="DIR", help="the CA directory")
    issue.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write")
    issue.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="H",
        help="extra DNS name or IP the party is reached at (repeatable)",
    )
    issue.set_defaults(func=_issue)


def _init(args: argparse.Namespace) -> int:
    try:
        path = init_ca(args.dir, name=args.name, days=args.days)
    except ConfigError as e:
        print(f"veil ca init: {e}", file=sys.stderr)
        return 2
    print(f"federation CA written: {path} (keep {path.parent / 'ca.key'} secret)")
    return 0


def _issue(args: argparse.Namespace) -> int:
    try:
        files = issue_party(args.ca, args.party, args.out, hosts=args.host)
    except ConfigError as e:
        print(f"veil ca issue: {e}", file=sys.stderr)
        return 2
    print(f"certificate for {args.party}: {files.cert}\n  key: {files.key}\n  CA: {files.ca_cert}")
    return 0
