"""The ``veil`` command line: a thin dispatcher.

Each command lives beside the code it drives and adds itself through an
``add_parser(subparsers)`` function of a module listed in ``COMMANDS``.
User errors print one line on stderr, never a traceback: exit code 2 for bad
input (:class:`ConfigError`), 1 for other Veil errors. SIGTERM and SIGHUP stop a
command as Ctrl-C does (a message, exit code 128 + the signal: 130 Ctrl-C, 143
SIGTERM); ``veil run`` also writes its report and removes its staging folder.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from types import FrameType

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


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C's KeyboardInterrupt; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


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
    if threading.current_thread() is threading.main_thread():  # (tests call main in threads)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _raise_stopped)
    try:
        return int(func(args))
    except ConfigError as e:
        print(f"veil: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except VeilError as e:
        print(f"veil: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as e:
        signum = int(getattr(e, "signum", signal.SIGINT))
        print(f"veil: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
