"""Benchmark of the silent VOLE (veil.protocols.psi.vole): time and peak RSS per role.

Both roles run as two forked OS processes joined by pipes (``_pipe_transport``: the
in-memory transport's framing, one core each when two are free), n VOLE outputs per
run. Per run and role: wall seconds, CPU seconds of that process, peak RSS
(``ru_maxrss`` of the child; the fork shares the small parent's pages) and bytes sent;
the correlation c = b + a * Delta is checked on 256 rows of each run. Prints one JSON
line per run and a Markdown row of medians. ``--fallback`` runs with VEIL_NATIVE=0
(no C helper: numpy/Python fallback) for a comparison at a smaller n.

    python benchmarks/vole.py                        # n = 1.25 * 10^6, 3 runs
    python benchmarks/vole.py --n 100000 --fallback  # the fallback
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
from typing import Any

import numpy as np
from _pipe_transport import run_processes

from veil.net.session import Session

CHECK_ROWS = 256


def _sender(n: int) -> Any:
    def run(s: Session) -> dict[str, Any]:
        from veil.protocols.psi import vole

        out = vole.vole_sender(s, n)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"delta": out.delta.tolist(), "b": out.b[:CHECK_ROWS].tolist(), "rss_mb": rss}

    return run


def _receiver(n: int) -> Any:
    def run(s: Session) -> dict[str, Any]:
        from veil.protocols.psi import vole

        out = vole.vole_receiver(s, n)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        a, c = out.a[:CHECK_ROWS].tolist(), out.c[:CHECK_ROWS].tolist()
        return {"a": a, "c": c, "rss_mb": rss}

    return run


def one_run(n: int) -> dict[str, Any]:
    from veil.protocols.psi import gf128

    out = run_processes({"sender": _sender(n), "receiver": _receiver(n)}, roles={})
    snd, rcv = out["sender"]["result"], out["receiver"]["result"]
    delta = np.array(snd["delta"], dtype=np.uint64)
    a, b, c = (np.array(x, dtype=np.uint64) for x in (rcv["a"], snd["b"], rcv["c"]))
    if not np.array_equal(c, b ^ gf128.mul_const(a, delta)):
        raise SystemExit("the VOLE correlation does not hold")
    row: dict[str, Any] = {"n": n}
    for role in ("sender", "receiver"):
        r = out[role]
        row[role] = {
            "wall_s": round(r["wall_s"], 3),
            "cpu_s": round(r["cpu_s"], 3),
            "peak_rss_mb": round(r["result"]["rss_mb"], 1),
            "bytes_sent": r["bytes_sent"],
        }
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_250_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fallback", action="store_true", help="VEIL_NATIVE=0: no C helper")
    ap.add_argument("--chunk", type=int, default=None, help="override vole.CHUNK_MAX")
    args = ap.parse_args()
    if args.fallback:
        os.environ["VEIL_NATIVE"] = "0"
    from veil.protocols.psi import gf128, vole

    if args.chunk:
        vole.CHUNK_MAX = args.chunk  # the forked parties inherit it

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    chunks, cots = vole._plan(args.n)
    shapes = sorted({(c.params.n, c.params.trees, c.params.depth) for c in chunks})
    plan = ", ".join(f"n {n:,}: T = {t} trees of 2^{d}" for n, t, d in shapes)
    print(
        f"# commit {commit}; load average {os.getloadavg()}; n = {args.n:,} in "
        f"{len(chunks)} chunk(s) ({plan}); {cots:,} COTs; C helper: {gf128.native_status()}",
        flush=True,
    )
    rows = []
    for _ in range(args.runs):
        rows.append(one_run(args.n))
        print(json.dumps(rows[-1]), flush=True)
    med = {
        role: {k: statistics.median(r[role][k] for r in rows) for k in rows[0][role]}
        for role in ("sender", "receiver")
    }
    print("| n | role | wall s | CPU s | peak RSS MB | MB sent |")
    print("|---|---|---|---|---|---|")
    for role, m in med.items():
        print(
            f"| {args.n:,} | {role} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} | "
            f"{m['peak_rss_mb']:.0f} | {m['bytes_sent'] / 1e6:.2f} |"
        )
    print(f"# load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
