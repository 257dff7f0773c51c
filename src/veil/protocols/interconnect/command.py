"""``veil psi --interconnect``: one party of an ECDH-PSI with any standard peer.

    veil psi --interconnect --rank 1 --listen 0.0.0.0:61601 --peer bank-a.example:61600 \\
        --name bank-b --peer-name bank-a --data customers.csv --id id --out matched.csv \\
        --ca fed/ca.crt --cert bank-b/bank-b.crt --key bank-b/bank-b.key

Reads ``--data`` (CSV with a header), runs the interconnection PSI on column ``--id``
and, if this party gets the result, writes the intersected rows (same header, input
order, duplicates kept) to ``--out`` atomically. Mutual TLS unless ``--insecure``.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
import time
from pathlib import Path
from typing import IO

from veil.errors import ConfigError
from veil.fileio import write_atomic_with
from veil.net.certs import TlsFiles, check_party_name
from veil.net.grpc_transport import GrpcConfig, GrpcTransport
from veil.protocols.interconnect.party import IcPsiOptions, run_interconnect_psi
from veil.protocols.interconnect.suite import SUITES

INSECURE_WARNING = (
    "WARNING: --insecure: plaintext gRPC, no authentication of the peer. Anyone on the "
    "path can read and alter the PSI messages. Use only on a trusted network or loopback."
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``veil psi`` on the top-level CLI."""
    p = subparsers.add_parser(
        "psi",
        help="private set intersection with a peer on the interconnection standard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--interconnect", action="store_true", required=True,
        help="speak the PPCA 9-2023 interconnection wire (SecretFlow-compatible)",
    )  # fmt: skip
    p.add_argument("--rank", type=int, required=True, help="0 (decides the handshake) or 1")
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="where this party listens")
    p.add_argument("--peer", required=True, metavar="HOST:PORT", help="where the peer listens")
    p.add_argument("--data", required=True, type=Path, help="input CSV with a header line")
    p.add_argument("--id", required=True, dest="id_col", metavar="COL", help="id column")
    p.add_argument("--out", required=True, type=Path, help="output CSV of intersected rows")
    p.add_argument(
        "--result-to-rank", type=int, default=-1, metavar="N",
        help="rank that learns the intersection; -1 (default) = both",
    )  # fmt: skip
    p.add_argument("--curve", default="25519", help=f"EC suite: {', '.join(sorted(SUITES))}")
    p.add_argument("--name", help="this party's name = its certificate name (default partyR)")
    p.add_argument("--peer-name", help="the peer's certificate name (default partyN)")
    p.add_argument("--ca", type=Path, help="federation CA certificate (ca.crt, see `veil ca`)")
    p.add_argument("--cert", type=Path, help="this party's certificate (`veil ca issue`)")
    p.add_argument("--key", type=Path, help="this party's private key")
    p.add_argument("--insecure", action="store_true", help="plaintext gRPC (prints a warning)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait per message")
    p.add_argument("--no-handshake", action="store_true", help="skip the handshake")
    p.set_defaults(func=run_command)


def read_rows(path: Path, id_col: str) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, ids) of a CSV file; errors name the flag to fix."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise ConfigError("--data", f"{path} is empty", "give a CSV with a header line")
            if id_col not in header:
                raise ConfigError("--id", f"no column '{id_col}' in {path}", f"one of {header}")
            i = header.index(id_col)
            rows = list(reader)
    except OSError as e:
        raise ConfigError("--data", f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("--data", f"{path} is not UTF-8", "re-save it as UTF-8") from None
    for n, r in enumerate(rows, start=2):
        if len(r) <= i:
            raise ConfigError("--data", f"line {n} of {path} has no '{id_col}' field")
    return header, rows, [r[i] for r in rows]


def write_rows_atomically(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write the CSV to a temporary file beside ``path``, then rename it into place."""

    def write(f: IO[bytes]) -> None:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        w = csv.writer(text, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        text.flush()
        text.detach()

    write_atomic_with(path, write)


def _tls(args: argparse.Namespace) -> TlsFiles | None:
    if args.insecure:
        print(INSECURE_WARNING, file=sys.stderr)
        return None
    missing = [f"--{n}" for n in ("ca", "cert", "key") if getattr(args, n) is None]
    if missing:
        raise ConfigError(
            " ".join(missing), "mutual TLS needs a CA, a certificate and a key",
            "make them with `veil ca`, or pass --insecure for a plaintext test link",
        )  # fmt: skip
    return TlsFiles(ca_cert=args.ca, cert=args.cert, key=args.key)


def run_command(args: argparse.Namespace) -> int:
    """Run one party from parsed CLI arguments; return the exit code."""
    opts = IcPsiOptions(
        rank=args.rank, result_to_rank=args.result_to_rank, curve=args.curve,
        handshake=not args.no_handshake, timeout=args.timeout, connect_timeout=args.timeout,
    )  # fmt: skip
    for flag, addr in (("--listen", args.listen), ("--peer", args.peer)):
        if not re.match(r"^\S+:\d{1,5}$", addr):
            raise ConfigError(flag, f"'{addr}' is not HOST:PORT", "e.g. 127.0.0.1:61600")
    peer = 1 - args.rank
    names = ["", ""]
    names[args.rank] = check_party_name(args.name or f"party{args.rank}", "--name")
    names[peer] = check_party_name(args.peer_name or f"party{peer}", "--peer-name")
    header, rows, ids = read_rows(args.data, args.id_col)
    addresses = [args.peer, args.peer]
    addresses[args.rank] = args.listen
    tls = _tls(args)
    cfg = GrpcConfig(
        rank=args.rank, names=names, addresses=addresses, tls=tls, insecure=tls is None,
        connect_timeout=args.timeout, listen=args.listen,
    )  # fmt: skip
    t0 = time.monotonic()
    transport = GrpcTransport(cfg)
    try:
        res = run_interconnect_psi(transport, ids, opts)
    finally:
        transport.close()
    took = time.monotonic() - t0
    traffic = transport.stats.totals()
    sent, got = traffic.bytes_sent, traffic.bytes_received
    if res.indices is None:
        print(
            f"done in {took:.1f} s: {len(ids)} ids; rank {args.result_to_rank} gets the "
            f"intersection, not this party (nothing written). sent {sent} B, received {got} B"
        )
        return 0
    common = res.rows()
    n_distinct = 0 if res.indices is None else len(res.indices)
    write_rows_atomically(args.out, header, [rows[i] for i in common])
    print(
        f"done in {took:.1f} s: {len(common)} of {len(ids)} rows "
        f"({n_distinct} distinct ids) in the intersection "
        f"-> {args.out}; peer declared {res.peer_item_num} ids; sent {sent} B, received {got} B"
    )
    return 0
