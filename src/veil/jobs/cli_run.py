"""``veil run JOB --out DIR [--timeout S] [--quiet] [--party P --address P=HOST:PORT ...]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from veil.errors import ConfigError
from veil.jobs.display import Display, LineDisplay, LiveDisplay
from veil.jobs.engines import parse_engine
from veil.jobs.runner import RunOptions, run_job
from veil.jobs.spec import load_job
from veil.net.certs import TlsFiles

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # Ctrl-C; a signal N gives 128 + N (SIGTERM: 143)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``run`` command to the ``veil`` command line."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run a job: every party locally, or one party of a federation",
        description="Run JOB (a YAML job file). By default every party runs on this machine, "
        "each in its own OS process, over loopback mutual-TLS gRPC with a throw-away CA. "
        "With --party, only that party runs here and talks to the others at their "
        "--address, with the federation certificates from 'veil ca'. Writes DIR/report.json "
        "and each local party's outputs under DIR/<party>/.",
    )
    p.add_argument("job", metavar="JOB", help="the job file (YAML)")
    p.add_argument("--out", metavar="DIR", required=True, help="folder for the results")
    p.add_argument(
        "--timeout",
        metavar="S",
        type=float,
        default=300.0,
        help="seconds a party waits for a peer to connect, and for each message of a peer "
        "that is alive (a dead peer is noticed within seconds); default 300",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress display (without a terminal, progress is one line per event)",
    )
    fed = p.add_argument_group("one party of a federation (several machines)")
    fed.add_argument("--party", metavar="NAME", help="run only this party here")
    fed.add_argument(
        "--address",
        metavar="PARTY=HOST:PORT",
        action="append",
        default=[],
        help="where a party listens; give one per party of the job",
    )
    fed.add_argument("--listen", metavar="HOST:PORT", help="bind here (default: own --address)")
    fed.add_argument(
        "--tls",
        metavar="DIR",
        type=Path,
        help="the folder 'veil ca issue PARTY' wrote (ca.crt, PARTY.crt, PARTY.key)",
    )
    fed.add_argument("--ca", metavar="FILE", type=Path, help="the federation CA certificate")
    fed.add_argument("--cert", metavar="FILE", type=Path, help="this party's certificate")
    fed.add_argument("--key", metavar="FILE", type=Path, help="this party's private key")
    fed.add_argument(
        "--engine",
        metavar="URL",
        help="where this party runs its heavy kernels: 'local' (default) or ray://HOST:PORT "
        "(its own Ray cluster; pip install 'veil[ray]'); overrides the job file's engine:",
    )
    p.set_defaults(func=run_command)


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """Turn the federation flags into :class:`RunOptions`, rejecting half-given ones."""
    addresses: dict[str, str] = {}
    for item in args.address:
        party, sep, addr = item.partition("=")
        if not sep or not party or not addr:
            raise ConfigError("--address", f"'{item}' is not PARTY=HOST:PORT", "e.g. bank=h:9443")
        addresses[party] = addr
    tls_given = [f for f in ("ca", "cert", "key") if getattr(args, f) is not None]
    engine = getattr(args, "engine", None)
    if engine is not None:
        engine = parse_engine(engine, "--engine").url
    if args.party is None:
        if tls_given or addresses or args.listen or args.tls or engine is not None:
            raise ConfigError(
                "--party",
                "missing",
                "--address, --listen, --tls, --ca, --cert, --key, --engine need --party",
            )
        return RunOptions(timeout=args.timeout)
    if args.tls is not None:
        if tls_given:
            raise ConfigError("--tls", "given with --ca/--cert/--key", "give one or the other")
        d = args.tls
        args.ca, args.cert, args.key = (
            d / "ca.crt",
            d / f"{args.party}.crt",
            d / f"{args.party}.key",
        )
    elif len(tls_given) != 3:
        raise ConfigError(
            "--ca/--cert/--key",
            "a federation party needs its certificates",
            "give --tls DIR (from 'veil ca issue') or all of --ca, --cert and --key",
        )
    tls = {args.party: TlsFiles(args.ca, args.cert, args.key)}
    return RunOptions(
        timeout=args.timeout,
        parties=(args.party,),
        addresses=addresses,
        listen=args.listen,
        tls=tls,
        engine=engine,
    )


def run_command(args: argparse.Namespace) -> int:
    """Validate the job, run it, print one summary line; the exit code says how it went:
    0 ok, 1 failed, 2 bad input (nothing ran), 128 + N stopped by signal N (130 Ctrl-C,
    143 SIGTERM)."""
    options = options_from_args(args)
    spec = load_job(args.job, check_data=True if args.party is None else [args.party])
    display: Display
    if args.quiet:
        display = Display()
    elif sys.stderr.isatty():
        display = LiveDisplay()
    else:
        display = LineDisplay()
    t0 = time.perf_counter()
    result = run_job(spec, args.out, options, display)
    if result.ok:
        if not args.quiet:
            print(
                f"{spec.name}: ok in {time.perf_counter() - t0:.1f} s; report: {result.report_path}"
            )
        return 0
    print(f"veil: run failed: {result.error} (report: {result.report_path})", file=sys.stderr)
    if result.signal is not None:
        return 128 + int(result.signal)
    return EXIT_FAILED
