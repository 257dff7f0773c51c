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
from typing import Any

import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _write_ids(folder: Path, n: int, files: int = 10, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    step = -(-n // files)
    for i, a in enumerate(range(start, start + n, step)):
        ids = [f"customer-{j:012d}" for j in range(a, min(a + step, start + n))]
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


def _vm(field: str) -> float:
    """``VmRSS``/``VmHWM`` of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pair(args: argparse.Namespace) -> None:
    """One whole PSI (a child process): each party in its own forked process, reading
    its ids from its Parquet folder either streamed (``IdChunks`` of the partitions) or
    into a list first; prints each party's wall, CPU and peak RSS."""
    from _pipe_transport import run_processes

    from veil.engine.partitions import parquet_partitions
    from veil.protocols.psi import Protocol, PsiParams, run_psi
    from veil.protocols.psi.ecdh import IdChunks

    params = PsiParams(result_to=("a",), protocol=Protocol(args.protocol))

    def party(folder: str) -> object:
        def fn(s: object) -> dict[str, float]:
            base = _vm("VmRSS")
            parts = parquet_partitions(folder, ["id"], rows=args.rows)
            chunks = (p["id"].tolist() for p in parts)
            ids = IdChunks(chunks) if args.input == "stream" else [x for c in chunks for x in c]
            res = run_psi(s, ids, params)  # type: ignore[arg-type]
            return {"size": res.size or 0, "base_mb": base, "peak_mb": _vm("VmHWM")}

        return fn

    out = run_processes(
        {"a": party(str(args.dir / "a")), "b": party(str(args.dir / "b"))},  # type: ignore[dict-item]
        {},
        timeout=7200,
    )
    print(json.dumps(out))


def _child(*argv: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    r = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, env=env, check=False
    )
    if r.returncode != 0:
        raise SystemExit(f"child {argv[:3]} failed: {r.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
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


def _run_config(name: str, folder: Path, rows: int, scalar: str) -> dict[str, Any]:
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


def _kernel_table(args: argparse.Namespace) -> None:
    """The per-id kernel over a Parquet folder on each engine config, alternating."""
    from veil.crypto import ecc

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


def _psi_table(n: int, args: argparse.Namespace) -> None:
    """Whole PSI at ``n`` ids per party (half in common): each protocol and input mode
    in a fresh process, in alternating order by round; peak RSS per party."""
    with tempfile.TemporaryDirectory(prefix="veil-scale-psi-") as tmp:
        _write_ids(Path(tmp) / "a", n)
        _write_ids(Path(tmp) / "b", n, start=n // 2)
        runs = [(p, i) for p in args.protocols.split(",") for i in args.inputs.split(",")]
        print(
            f"\nwhole PSI, {n:,} x {n:,} ids (Parquet folders of 10 files, partitions of "
            f"{args.rows:,} rows), each party its own process, load {os.getloadavg()[0]:.1f}"
        )
        print(
            "| protocol | ids input | round | party | wall s | CPU s | RSS before MB "
            "| peak RSS MB | peak - before, bytes per id |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for rnd in range(args.psi_rounds):
            for proto, mode in runs if rnd % 2 == 0 else runs[::-1]:
                argv = ["_pair", "--dir", tmp, "--protocol", proto, "--input", mode]
                r = _child(*argv, "--rows", str(args.rows))
                assert r["a"]["result"]["size"] == n - n // 2, r
                for who in ("a", "b"):
                    p = r[who]
                    res = p["result"]
                    grow = (res["peak_mb"] - res["base_mb"]) * 2**20 / n
                    role = "receiver" if who == "a" else "sender"
                    print(
                        f"| {proto} | {mode} | {rnd} | {who} ({role}) "
                        f"| {p['wall_s']:.1f} | {p['cpu_s']:.1f} | {res['base_mb']:.0f} "
                        f"| {res['peak_mb']:.0f} | {grow:.0f} |",
                        flush=True,
                    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="bench", choices=["bench", "_drive", "_pair"])
    ap.add_argument("--n", type=int, default=100_000, help="ids in the Parquet directory")
    ap.add_argument("--rows", type=int, default=8192, help="rows per partition")
    ap.add_argument("--configs", default="local,ray1,ray2")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--psi-n", default="", help="ids per party of whole PSI runs: N,N,...")
    ap.add_argument("--protocols", default="ecdh,kkrt", help="whole PSI runs: protocols")
    ap.add_argument("--inputs", default="stream,list", help="whole PSI runs: id inputs")
    ap.add_argument("--psi-rounds", type=int, default=1)
    ap.add_argument("--skip-kernel", action="store_true", help="whole PSI runs only")
    ap.add_argument("--protocol", default="ecdh")
    ap.add_argument("--input", default="stream")
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--engine")
    ap.add_argument("--scalar")
    args = ap.parse_args()
    if args.mode == "_drive":
        return _drive(args)
    if args.mode == "_pair":
        return _pair(args)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    if not args.skip_kernel:
        _kernel_table(args)
    for n in [int(x) for x in args.psi_n.split(",") if x]:
        _psi_table(n, args)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
