"""One job of a node: ``python -m veil.node.jobproc --config FILE``.

The node starts this process per approved job; it runs :func:`veil.jobs.runner.run_job`
for the node's own party (the same ``veil run --party`` worker, unchanged) and reports
step changes and the result as JSON lines on stdout. SIGINT or SIGTERM (cancel) and
the node going away (stdin closes) interrupt the run, which stops its worker; outputs
are staged and published by the runner only when every step succeeded.
"""

from __future__ import annotations

import _thread
import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

from veil.jobs.display import Display
from veil.jobs.runner import RunOptions, run_job
from veil.jobs.spec import load_job
from veil.net.certs import TlsFiles


class LineDisplay(Display):
    """Step changes as JSON lines for the node."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()

    def emit(self, **ev: Any) -> None:
        with self.lock:
            self.out.write(json.dumps(ev, default=str) + "\n")
            self.out.flush()

    def update(self, step: int, *, status: str | None = None, **fields: Any) -> None:
        ev: dict[str, Any] = {"event": "step", "step": step}
        if status is not None:
            ev["status"] = status
        for k in ("fraction", "seconds"):
            if k in fields and fields[k] is not None:
                ev[k] = float(fields[k])
        self.emit(**ev)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _watch(stdin: IO[bytes]) -> None:
    while stdin.read(1024):
        pass
    _thread.interrupt_main()  # the node went away: stop the run (the runner cleans up)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m veil.node.jobproc")
    ap.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    cfg = json.loads(Path(args.config).read_text(encoding="utf-8"))
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    display = LineDisplay(out)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    threading.Thread(target=_watch, args=(sys.stdin.buffer,), daemon=True).start()
    party = str(cfg["party"])
    try:
        spec = load_job(cfg["job"], check_data=[party])
        options = RunOptions(
            timeout=float(cfg["timeout"]),
            parties=(party,),
            addresses=dict(cfg["addresses"]),
            listen=str(cfg["listen"]),
            tls={party: TlsFiles(Path(cfg["ca"]), Path(cfg["cert"]), Path(cfg["key"]))},
            job=str(cfg["route"]),
            engine=cfg.get("engine"),  # node.toml's engine: where this party's kernels run
        )
        result = run_job(spec, cfg["out"], options, display)
        display.emit(event="result", ok=result.ok, error=result.error, report=result.report)
        return 0 if result.ok else 1
    except KeyboardInterrupt:
        display.emit(event="result", ok=False, error="interrupted", report={})
        return 130
    except Exception as e:
        display.emit(event="result", ok=False, error=f"{type(e).__name__}: {e}", report={})
        return 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # not a normal exit: the stdin watcher thread must not block shutdown
