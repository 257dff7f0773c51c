"""The ``veil`` command line: a thin dispatcher.

Each command lives beside the code it drives and adds itself through an
``add_parser(subparsers)`` function of a module listed in ``COMMANDS``.
User errors print one line on stderr, never a traceback: exit code 2 for bad
input (:class:`ConfigError`), 1 for other Veil errors.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from veil import __version__
from veil.errors import ConfigError, VeilError

COMMANDS = (
    "veil.jobs.cli_run",
    "veil.net.cli_ca",
    "veil.protocols.interconnect.command",
    "veil.node.cli",
    "veil.audit.cli_audit",
)
EXIT_USAGE = 2
EXIT_FAILED = 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="veil", description="Veil: data usable, never visible.")
    p.add_argument("--version", action="version", version=f"veil {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMANDS:
        importlib.import_module(mod).add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if args.command is None or func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(func(args))
    except ConfigError as e:
        print(f"veil: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except VeilError as e:
        print(f"veil: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("veil: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
