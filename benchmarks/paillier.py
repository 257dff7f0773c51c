"""Benchmark Veil's Paillier and OU against python-paillier (phe), SecretFlow HEU and FATE.

One run at 2048 bits: encrypt (as the key owner, which Veil does through the CRT, and
with a partner's copy of the public key), decrypt, ct+ct, ct*scalar and an encrypted
(n,) x (n, k) matrix-vector product (default 10,000 x 30), single-core and all-core,
side by side with the peers measured in the same run. Each figure is the median of
``--repeats`` rounds; we print operations per second of wall time and per CPU-second
(main process plus Veil's worker processes), because the machine is shared and loaded.
Each round runs every system once, Veil and the peers in the opposite order to the
round before (``--first`` picks round 0's). The matrix product and the pool-filled
encryption run once per round as well.

    python benchmarks/paillier.py                       # full run, markdown to stdout
    python benchmarks/paillier.py --quick               # smaller batches
    python benchmarks/paillier.py --heu-python /tmp/heu-venv/bin/python

The HEU/FATE venv (``--heu-python``, default /tmp/heu-venv/bin/python) is built as
benchmarks/RESULTS.md says: ``python3 -m venv /tmp/heu-venv && /tmp/heu-venv/bin/pip
install --pre sf-heu numpy fate-utils``; without it those columns read "not run".

HEU and FATE run as subprocesses of their own venv (``benchmarks/_peer_he.py``), since
they pin their own numpy; phe runs in-process (with gmpy2). phe's matrix product is
timed on ``--phe-rows`` rows and scaled linearly to the full row count (its cost is
exactly linear: one scalar multiplication and one addition per element).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from _bench import add_order_args, in_order

from veil.crypto import _native, ou, paillier
from veil.crypto.he import TEST_POLICY, set_workers

HERE = Path(__file__).resolve().parent


def cpu_now() -> float:
    """CPU seconds of this process (all threads, ns resolution) plus its worker processes."""
    total = time.process_time()
    for child in psutil.Process().children(recursive=True):
        try:
            ct = child.cpu_times()
            total += ct.user + ct.system
        except psutil.Error:
            pass
    return total


def measure(fn: Callable[[], Any], ops: int, repeats: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        c0, w0 = cpu_now(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(cpu_now() - c0)
    w, c = statistics.median(walls), statistics.median(cpus)
    return {"wall_per_s": ops / w, "cpu_per_s": ops / max(c, 1e-9), "wall_s": w}


def veil_suite(mod: Any, args: argparse.Namespace, workers: int) -> dict[str, Any]:
    set_workers(workers)
    pk, sk = mod.generate_keypair(args.bits)
    rng = np.random.default_rng(0)
    n = args.n
    x = rng.normal(size=n)
    pub = mod.PublicKey.from_wire(pk.to_wire(), TEST_POLICY)  # a partner's copy (any --bits)
    pk.encrypt(x[: max(8, 64 * workers)])  # build tables, start workers
    pub.encrypt(x[: max(8, 64 * workers)])
    res: dict[str, Any] = {}
    res["encrypt (key owner)"] = measure(lambda: pk.encrypt(x), n, args.repeats)
    res["encrypt (public key)"] = measure(lambda: pub.encrypt(x), n, args.repeats)
    c = pk.encrypt(x)
    c2 = pk.encrypt(x[::-1].copy())
    nd = min(n, args.n_decrypt)
    res["decrypt"] = measure(lambda: sk.decrypt(c[:nd]), nd, args.repeats)
    res["ct+ct"] = measure(lambda: c + c2, n, args.repeats)
    res["ct*scalar"] = measure(lambda: c * 0.731, n, args.repeats)
    pk.precompute(n)
    res["encrypt (pool filled)"] = measure(lambda: pk.encrypt(x), n, 1)
    rows, cols = args.rows, args.cols
    d = pk.encrypt(rng.normal(size=rows))
    X = rng.normal(size=(rows, cols))
    got = measure(lambda: d @ X, rows * cols, 1)
    res["matvec"] = {**got, "shape": f"{rows}x{cols}"}
    err = np.max(np.abs(sk.decrypt(d @ X[:, :2]) - sk.decrypt(d) @ X[:, :2]))
    res["matvec_max_abs_error"] = float(err)
    return res


def phe_suite(args: argparse.Namespace) -> dict[str, Any]:
    import phe

    pub, priv = phe.generate_paillier_keypair(n_length=args.bits)
    rng = np.random.default_rng(0)
    n = args.n_phe
    x = rng.normal(size=n).tolist()
    res: dict[str, Any] = {}
    res["encrypt"] = measure(lambda: [pub.encrypt(v) for v in x], n, args.repeats)
    c = [pub.encrypt(v) for v in x]
    c2 = [pub.encrypt(v) for v in reversed(x)]
    res["decrypt"] = measure(lambda: [priv.decrypt(v) for v in c], n, args.repeats)
    res["ct+ct"] = measure(lambda: [a + b for a, b in zip(c, c2, strict=True)], n, args.repeats)
    res["ct*scalar"] = measure(lambda: [a * 0.731 for a in c], n, args.repeats)
    rows, cols = args.phe_rows, args.cols
    X = rng.normal(size=(rows, cols))
    d = [pub.encrypt(v) for v in rng.normal(size=rows)]

    def matvec() -> list[Any]:
        out = []
        for j in range(cols):
            acc = d[0] * X[0, j]
            for i in range(1, rows):
                acc = acc + d[i] * X[i, j]
            out.append(acc)
        return out

    got = measure(matvec, rows * cols, 1)
    res["matvec"] = {**got, "shape": f"{rows}x{cols} (scaled to {args.rows} rows)"}
    return res


def peer_suite(python: str, lib: str, args: argparse.Namespace) -> dict[str, Any] | str:
    cmd = [python, str(HERE / "_peer_he.py"), lib, str(args.bits), str(args.n_phe)]
    cmd += [str(args.repeats), str(args.phe_rows), str(args.cols)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        err = getattr(e, "stderr", "") or str(e)
        return f"not run: {err.strip().splitlines()[-1] if err.strip() else e}"
    res = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    # a peer encrypts one way, as the key owner or not: its figure serves both rows
    res["encrypt (key owner)"] = res["encrypt (public key)"] = res.pop("encrypt")
    return res


OPS = [
    "encrypt (key owner)",
    "encrypt (public key)",
    "encrypt (pool filled)",
    "decrypt",
    "ct+ct",
    "ct*scalar",
    "matvec",
]


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    names = list(results)
    lines = [
        "| operation | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for op in OPS:
        cells = []
        for name in names:
            r = results[name]
            if isinstance(r, str) or op not in r:
                cells.append("n/a")
                continue
            m = r[op]
            cells.append(f"{m['wall_per_s']:,.0f} ({m['cpu_per_s']:,.0f}/cpu-s)")
        lines.append(f"| {op} /s | " + " | ".join(cells) + " |")
    cells = []
    for name in names:
        r = results[name]
        if isinstance(r, str) or "matvec" not in r:
            cells.append("n/a")
            continue
        m = r["matvec"]
        cells.append(f"{args.rows * args.cols / m['wall_per_s']:,.1f} s")
    lines.append(f"| matvec {args.rows}x{args.cols} wall | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merge_rounds(runs: list[Any]) -> Any:
    """Medians over rounds of each figure; a peer that did not run keeps its message."""
    if any(isinstance(r, str) for r in runs):
        return next(r for r in runs if isinstance(r, str))
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        if isinstance(first, dict):
            out[key] = {
                f: statistics.median(r[key][f] for r in runs) if isinstance(v, int | float) else v
                for f, v in first.items()
            }
        elif isinstance(first, int | float):
            out[key] = max(r[key] for r in runs)  # e.g. the worst error seen
        else:
            out[key] = first
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=2048)
    ap.add_argument("--n", type=int, default=2000, help="batch size for Veil")
    ap.add_argument("--n-decrypt", type=int, default=1000)
    ap.add_argument("--n-phe", type=int, default=200, help="batch size for the peers")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--cols", type=int, default=30)
    ap.add_argument("--phe-rows", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--heu-python",
        default="/tmp/heu-venv/bin/python",
        help="python of a venv with sf-heu and fate-utils (see the docstring)",
    )
    ap.add_argument("--json", type=Path, help="also write raw results here")
    add_order_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.n, args.n_decrypt, args.n_phe, args.rows, args.cols = 400, 200, 50, 1000, 5
        args.phe_rows = 50
    cores = os.cpu_count() or 1
    one = copy.copy(args)
    one.repeats = 1  # each suite measures once per round; rounds give the median

    def phe_one() -> dict[str, Any]:
        r = phe_suite(one)
        r["encrypt (key owner)"] = r["encrypt (public key)"] = r.pop("encrypt")
        return r

    peers: dict[str, Callable[[], Any]] = {"phe (gmpy2)": phe_one}
    for lib in ("heu-zpaillier", "heu-ou", "fate-paillier"):
        peers[lib] = lambda lib=lib: peer_suite(args.heu_python, lib, one)
    veil: dict[str, Callable[[], Any]] = {}
    for mod, name in ((paillier, "paillier"), (ou, "ou")):
        veil[f"veil {name} 1 core"] = lambda mod=mod: veil_suite(mod, one, 1)
        veil[f"veil {name} {cores} cores"] = lambda mod=mod: veil_suite(mod, one, cores)
    rounds: dict[str, list[Any]] = {name: [] for name in [*peers, *veil]}
    for i in range(args.repeats):
        for name in in_order(i, args.first, list(veil), list(peers)):
            rounds[name].append({**veil, **peers}[name]())
    # the table keeps the peers' columns first, whatever order they ran in
    results = {name: merge_rounds(rounds[name]) for name in [*peers, *veil]}
    set_workers(cores)
    print(f"bits={args.bits} cores={cores} load={os.getloadavg()} kernel: {_native.status()}")
    print(table(results, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
