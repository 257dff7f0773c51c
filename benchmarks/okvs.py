"""Micro-benchmark of the banded OKVS (veil.protocols.psi.okvs): encode and decode time.

No peer yet: these are first figures for the RR22 work (issue 24), not claims. Per size
and round it times, on fresh random 16-byte ids and 128-bit values: ``digest``
(BLAKE2b-128 of the ids, a Python loop), ``encode`` (from digests: AES rows, duplicate
check, elimination) and ``decode`` (from digests, all keys at once), in wall and process
CPU seconds (the machine may be shared), with the C helper and -- at the sizes
``--fallback-max`` allows -- the numpy/Python fallback. Each figure is the median
over ``--rounds`` rounds.

    python benchmarks/okvs.py                       # 10^5 and 10^6 keys, 3 rounds
    python benchmarks/okvs.py --sizes 100000 --rounds 5 --fallback-max 100000
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time

import numpy as np

from veil.protocols.psi import okvs

STEPS = ("digest", "encode", "decode")


def _time_once(n: int, native: bool) -> dict[str, float]:
    saved = okvs._STATE.get("native")
    if not native:
        okvs._STATE["native"] = (None, "benchmark: fallback")
    try:
        ids = [os.urandom(16) for _ in range(n)]
        vals = np.frombuffer(os.urandom(16 * n), dtype="<u8").reshape(n, 2)
        seed = secrets.token_bytes(okvs.SEED_BYTES)
        params = okvs.params_for(n)
        clock, cpu = time.perf_counter, time.process_time
        t0, c0 = clock(), cpu()
        digests = okvs.key_digests(ids)
        t1, c1 = clock(), cpu()
        vector = okvs.encode(digests, vals, seed, params)
        t2, c2 = clock(), cpu()
        out = okvs.decode(vector, digests, seed, params)
        t3, c3 = clock(), cpu()
        if not np.array_equal(out, vals):
            raise SystemExit("decode(encode(x)) != x")
        return {
            "digest": t1 - t0,
            "encode": t2 - t1,
            "decode": t3 - t2,
            "digest_cpu": c1 - c0,
            "encode_cpu": c2 - c1,
            "decode_cpu": c3 - c2,
        }
    finally:
        if saved is not None:
            okvs._STATE["native"] = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fallback-max", type=int, default=100_000)
    args = ap.parse_args()
    print(f"C helper: {okvs.native_status()}; load average {os.getloadavg()}")
    print("Seconds of wall time (CPU time of this process in brackets), medians:")
    print("| keys | path | w | m/n | digest | encode | decode |")
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        params = okvs.params_for(n)
        paths = [True] + ([False] if n <= args.fallback_max else [])
        if okvs._native() is None:
            paths = [False]
        for native in paths:
            runs = [_time_once(n, native) for _ in range(args.rounds)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"| {n:,} | {'C' if native else 'fallback'} | {params.w} | "
                f"{params.m / n:.3f} | "
                + " | ".join(f"{med[k]:.3f} ({med[k + '_cpu']:.3f})" for k in STEPS)
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
