"""Scale-out of a party's PSI kernels: the local engine vs a Ray cluster of 1 or 2 nodes.

    python benchmarks/scale.py --n 1000000 --configs local,ray1,ray2 --psi-n 100000

``kernel``: a directory of Parquet files with ``--n`` ids (10 part files, as Spark
writes them) is read in partitions of ``--rows`` and every id goes through ECDH-PSI's
per-id kernel, ``[k]H(id)`` (:func:`veil.engine.partitions.blind_partitions`), on
each engine in turn (a fresh driver process each; configs alternate order by round):

- ``local``: :class:`veil.engine.LocalEngine` (threads of the driver);
- ``rayK``: a loopback Ray cluster (:mod:`veil.engine.loopback`): a head that runs no
  task plus K worker nodes of one CPU each; the driver connects with ``ray://``.

Each run reports wall time, the driver's CPU and peak RSS, the cluster's CPU as seen
from its processes (a lower bound: the workers Ray ends with the driver are not seen)
and its largest peak RSS, the per-core rate (ids per CPU-second; local engine only,
where every CPU second is seen) and the SHA-256 of the output (one fixed scalar for the run: every
engine must give the same bytes). ``psi``: the whole ECDH-PSI and KKRT protocols with
``--psi-n`` ids per party (two parties in one process, memory transport, local engine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _write_ids(folder: Path, n: int, files: int = 10) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    step = -(-n // files)
    for i, a in enumerate(range(0, n, step)):
        ids = [f"customer-{j:012d}" for j in range(a, min(a + step, n))]
        pd.DataFrame({"id": ids}).to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    (folder / "_SUCCESS").write_text("")


def _drive(args: argparse.Namespace) -> None:
    """One driver run (a child process): stream the ids through one engine."""
    from veil.engine import open_engine
    from veil.engine.partitions import blind_partitions, parquet_partitions

    engine = open_engine(args.engine)
    digest, count = hashlib.sha256(), 0
    t0, c0 = time.perf_counter(), time.process_time()
    parts = parquet_partitions(args.dir, ["id"], rows=args.rows)
    for blob in blind_partitions(engine, parts, "id", bytes.fromhex(args.scalar)):
        digest.update(blob)
        count += len(blob) // 32
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    engine.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps({"n": count, "wall": wall, "cpu": cpu, "rss_mb": rss, "sha": digest.hexdigest()})
    )


def _psi(args: argparse.Namespace) -> None:
    """Both parties of one PSI protocol in this process (a child process)."""
    from veil.net.local import run_parties
    from veil.protocols.psi import Protocol, PsiParams, run_psi

    n = args.psi_n
    a = [f"customer-{j:012d}" for j in range(n)]
    b = [f"customer-{j:012d}" for j in range(n // 2, n + n // 2)]
    params = PsiParams(result_to=("a", "b"), protocol=Protocol(args.protocol))
    t0, c0 = time.perf_counter(), time.process_time()
    out = run_parties(
        {"a": lambda s: run_psi(s, a, params), "b": lambda s: run_psi(s, b, params)}, timeout=3600
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert out["a"].size == n - n // 2
    print(json.dumps({"n": n, "wall": wall, "cpu": cpu, "rss_mb": rss}))


def _child(*argv: str) -> dict[str, float | str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    r = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, env=env, check=False
    )
    if r.returncode != 0:
        raise SystemExit(f"child {argv[:3]} failed: {r.stderr[-2000:]}")
    result: dict[str, float | str] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def _cluster_usage(roots: list[int]) -> tuple[float, float]:
    """CPU seconds and the largest peak RSS (MB) of the ``roots`` processes and all their
    descendants (the nodes' daemons and Ray's worker processes); the CPU of workers that
    exited (Ray ends a job's workers when its driver leaves) counts through their
    parents' reaped-children times."""
    cpu, hwm = 0.0, 0.0
    procs: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                procs[p.pid] = p
        except psutil.Error:
            continue
    for p in procs.values():
        try:
            t = p.cpu_times()
            cpu += t.user + t.system + t.children_user + t.children_system  # + reaped workers
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm = max(hwm, int(line.split()[1]) / 1024)
        except (psutil.Error, OSError):
            continue
    return cpu, hwm


def _run_config(name: str, folder: Path, rows: int, scalar: str) -> dict[str, float | str]:
    base = ["_drive", "--dir", str(folder), "--rows", str(rows), "--scalar", scalar]
    if name == "local":
        res = _child(*base, "--engine", "local")
        res.update(cluster_cpu=0.0, cluster_rss_mb=0.0)
        return res
    from veil.engine.loopback import start_cluster

    cluster = start_cluster(int(name.removeprefix("ray")), head_cpus=0)
    try:
        roots = [n.proc.pid for n in cluster.nodes]
        idle_cpu, _ = _cluster_usage(roots)
        res = _child(*base, "--engine", f"ray://{cluster.client}")
        cpu, hwm = _cluster_usage(roots)
        res.update(cluster_cpu=cpu - idle_cpu, cluster_rss_mb=hwm)
    finally:
        cluster.stop()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="bench", choices=["bench", "_drive", "_psi"])
    ap.add_argument("--n", type=int, default=100_000, help="ids in the Parquet directory")
    ap.add_argument("--rows", type=int, default=8192, help="rows per partition")
    ap.add_argument("--configs", default="local,ray1,ray2")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--psi-n", type=int, default=0, help="ids per party of whole PSI runs")
    ap.add_argument("--protocol", default="ecdh")
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--engine")
    ap.add_argument("--scalar")
    args = ap.parse_args()
    if args.mode == "_drive":
        return _drive(args)
    if args.mode == "_psi":
        return _psi(args)
    from veil.crypto import ecc

    print(f"load average at start: {os.getloadavg()}", flush=True)
    configs = args.configs.split(",")
    scalar = ecc.new_scalar().hex()
    rows = []
    with tempfile.TemporaryDirectory(prefix="veil-scale-") as tmp:
        folder = Path(tmp) / "ids"
        _write_ids(folder, args.n)
        for rnd in range(args.rounds):
            for name in configs if rnd % 2 == 0 else configs[::-1]:
                r = _run_config(name, folder, args.rows, scalar)
                # Per CPU-second only where every CPU second is seen: the local engine
                # (Ray ends a job's workers when the driver leaves; their CPU is not seen).
                rate = float(r["n"]) / float(r["cpu"]) if name == "local" else float("nan")
                r.update(config=name, round=rnd, ids_per_cpu_s=rate)
                r["ids_per_s"] = float(r["n"]) / float(r["wall"])
                rows.append(r)
                print(json.dumps(r), flush=True)
    if len({r["sha"] for r in rows}) != 1:
        raise SystemExit("engines gave different bytes")
    print(
        "\n| config | ids | wall s | ids/s | driver CPU s | cluster CPU s seen | ids per CPU-s "
        "| driver peak RSS MB | largest cluster process peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} | {r['n']} | {float(r['wall']):.1f} | {float(r['ids_per_s']):,.0f} "
            f"| {float(r['cpu']):.1f} | {float(r['cluster_cpu']):.1f} "
            f"| {float(r['ids_per_cpu_s']):,.0f} | {float(r['rss_mb']):.0f} "
            f"| {float(r['cluster_rss_mb']):.0f} |"
        )
    for proto in ("ecdh", "kkrt") if args.psi_n else ():
        r = _child("_psi", "--psi-n", str(args.psi_n), "--protocol", proto)
        print(
            f"whole {proto} PSI, {args.psi_n} x {args.psi_n}: wall {float(r['wall']):.1f} s, "
            f"CPU {float(r['cpu']):.1f} s, peak RSS (both parties) {float(r['rss_mb']):.0f} MB"
        )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
