"""The ``veil`` command line."""

from __future__ import annotations

import argparse
import sys

from veil import __version__
from veil.errors import ConfigError, VeilError
from veil.net import cli_ca


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="veil", description="Veil: data usable, never visible.")
    p.add_argument("--version", action="version", version=f"veil {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    cli_ca.add_parser(sub)
    from veil.protocols.interconnect import command as interconnect_command

    interconnect_command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except ConfigError as e:
        print(f"veil {args.command}: error: {e}", file=sys.stderr)
        return 2
    except VeilError as e:
        print(f"veil {args.command}: failed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
