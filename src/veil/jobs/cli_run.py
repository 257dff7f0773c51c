"""``veil run JOB --out DIR [--timeout S] [--quiet]``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from veil.jobs.display import Display, LiveDisplay
from veil.jobs.runner import RunOptions, run_job
from veil.jobs.spec import load_job

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def add_parser(subparsers: Any) -> None:
    """Add the ``run`` command to the ``veil`` command line."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run a job locally, each party in its own process over mutual-TLS gRPC",
        description="Run JOB (a YAML job file) locally: one OS process per party, talking "
        "over loopback mutual-TLS gRPC with a throw-away CA. Writes DIR/report.json and "
        "each party's outputs under DIR/<party>/.",
    )
    p.add_argument("job", metavar="JOB", help="the job file (YAML)")
    p.add_argument("--out", metavar="DIR", required=True, help="folder for the results")
    p.add_argument(
        "--timeout",
        metavar="S",
        type=float,
        default=300.0,
        help="seconds a party waits for a peer before failing (default 300)",
    )
    p.add_argument("--quiet", action="store_true", help="no live progress display")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Validate the job, run it, print one summary line; the exit code says how it went."""
    spec = load_job(args.job)
    display: Display = Display() if args.quiet else LiveDisplay()
    t0 = time.perf_counter()
    result = run_job(spec, args.out, RunOptions(timeout=args.timeout), display)
    if result.ok:
        if not args.quiet:
            print(
                f"{spec.name}: ok in {time.perf_counter() - t0:.1f} s; report: {result.report_path}"
            )
        return 0
    print(f"veil: run failed: {result.error} (report: {result.report_path})", file=sys.stderr)
    return EXIT_INTERRUPTED if result.error and "interrupted" in result.error else EXIT_FAILED
