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
engine must give the same bytes).

``psi`` (``--psi-n``): the whole two-party ECDH-PSI and KKRT, each party its own forked
process (pipes between them), its ids streamed from its own Parquet folder, with each
party's engine one of ``--psi-configs`` (``local`` | ``ray1`` | ``ray2``). ``rayK`` is
ONE loopback cluster that both parties use (a head that runs no task plus K worker
nodes of one CPU each; each party connects with its own Ray Client): K worker cores in
all, which is what a 2-core box has. One cluster per party would double Ray's daemons
(GCS, raylets, client servers) and put 2K one-CPU workers on 2 cores. A thread samples
every process of the cluster twice a second: the CPU it used (workers included, seen
before Ray ends them with their driver; processes shorter than a sample are missed, so
it is a lower bound) and its peak RSS. Each run reports wall, CPU and peak RSS of each
party, the cluster's CPU and largest peak RSS of a Ray worker and of a Ray daemon,
CPU-s per 10^6 ids per party (all CPU seen, parties and cluster, halved), the bytes each
party sent per id, and the SHA-256 of the sorted intersection (every engine must give
the same).
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
import threading
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
    into a list first, its kernels on ``--engine`` (each party connects for itself);
    prints each party's wall, CPU, peak RSS and bytes sent, and the receiver's
    SHA-256 of the sorted intersection."""
    from _pipe_transport import run_processes

    from veil.engine import install
    from veil.engine.partitions import parquet_partitions
    from veil.protocols.psi import Protocol, PsiParams, run_psi
    from veil.protocols.psi.ecdh import IdChunks

    params = PsiParams(result_to=("a",), protocol=Protocol(args.protocol), spill_dir=args.spill)

    def party(folder: str) -> object:
        def fn(s: object) -> dict[str, object]:
            base = _vm("VmRSS")
            parts = parquet_partitions(folder, ["id"], rows=args.rows)
            chunks = (p["id"].tolist() for p in parts)
            ids = IdChunks(chunks) if args.input == "stream" else [x for c in chunks for x in c]
            with install(args.engine or "local"):  # this party's engine, opened by itself
                res = run_psi(s, ids, params)  # type: ignore[arg-type]
            psi_peak = _vm("VmHWM")  # the run's own peak, before the result is hashed
            sha = ""
            if res.indices is not None:  # sorted in place, hashed without a copy
                res.indices.sort()
                sha = hashlib.sha256(res.indices.astype("<i8", copy=False).data).hexdigest()
            return {
                "size": res.size or 0,
                "sha": sha,
                "base_mb": base,
                "psi_peak_mb": psi_peak,
                "peak_mb": _vm("VmHWM"),
            }

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


class _ClusterSampler:
    """Samples every process of a loopback cluster (its nodes' process groups and their
    descendants) every ``every`` seconds in a thread: CPU used since the start (per
    process, its last sample) and peak RSS (``VmHWM``), Ray workers (``ray::`` or
    ``default_worker`` in the command line) apart from Ray's daemons."""

    def __init__(self, roots: list[int], every: float = 0.5) -> None:
        self._roots, self._every = roots, every
        self._cpu: dict[tuple[int, float], float] = {}
        self._hwm: dict[tuple[int, float], tuple[float, bool]] = {}
        self._base: dict[tuple[int, float], float] = {}
        self.total_rss_mb = 0.0
        self._stop = threading.Event()
        self._sample()
        self._base = dict(self._cpu)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _procs(self) -> list[psutil.Process]:
        out: list[psutil.Process] = []
        for pid in self._roots:
            try:
                root = psutil.Process(pid)
                out += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        return out

    def _sample(self) -> None:
        rss = 0.0
        for p in self._procs():
            try:
                key = (p.pid, p.create_time())
                t = p.cpu_times()
                status = Path(f"/proc/{p.pid}/status").read_text().splitlines()
                worker = "ray::" in " ".join(p.cmdline()) or "default_worker" in p.name()
            except (psutil.Error, OSError):
                continue
            self._cpu[key] = t.user + t.system
            fields = {ln.split(":")[0]: ln.split()[1:2] for ln in status if ":" in ln}
            hwm = int((fields.get("VmHWM") or ["0"])[0]) / 1024
            rss += int((fields.get("VmRSS") or ["0"])[0]) / 1024
            old = self._hwm.get(key, (0.0, worker))
            self._hwm[key] = (max(hwm, old[0]), worker or old[1])
        self.total_rss_mb = max(self.total_rss_mb, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def stop(self) -> dict[str, float]:
        """Stop sampling; the cluster's CPU seconds since the start, the largest peak RSS
        of a worker and of a daemon, the largest sum of RSS seen, and the process count."""
        self._stop.set()
        self._thread.join()
        self._sample()
        cpu = sum(c - self._base.get(k, 0.0) for k, c in self._cpu.items())
        workers = [h for h, w in self._hwm.values() if w]
        daemons = [h for h, w in self._hwm.values() if not w]
        return {
            "cluster_cpu": cpu,
            "worker_rss_mb": max(workers, default=0.0),
            "daemon_rss_mb": max(daemons, default=0.0),
            "cluster_total_rss_mb": self.total_rss_mb,
            "cluster_procs": float(len(self._hwm)),
        }


def _psi_run(name: str, folder: Path, proto: str, args: argparse.Namespace) -> dict[str, Any]:
    """One whole PSI with both parties' engines ``name``; the cluster (if any) is fresh."""
    argv = ["_pair", "--dir", str(folder), "--protocol", proto, "--input", args.inputs]
    argv += ["--rows", str(args.rows)]
    if args.spill:
        argv += ["--spill", args.spill]
    start = time.strftime("%H:%M:%S", time.gmtime())
    load = os.getloadavg()[0]
    if name == "local":
        r = _child(*argv, "--engine", "local")
        usage = {"cluster_cpu": 0.0, "worker_rss_mb": 0.0, "daemon_rss_mb": 0.0}
        usage.update(cluster_total_rss_mb=0.0, cluster_procs=0.0)
    else:
        from veil.engine.loopback import start_cluster

        k, store = int(name.removeprefix("ray")), args.object_store_mb << 20
        cluster = start_cluster(k, head_cpus=0, drivers=2, object_store_bytes=store)
        try:
            sampler = _ClusterSampler([n.proc.pid for n in cluster.nodes])
            try:
                r = _child(*argv, "--engine", f"ray://{cluster.client}")
            finally:
                usage = sampler.stop()
        finally:
            cluster.stop()
    r.update(usage, config=name, protocol=proto, start_utc=start, load=load)
    return r


def _psi_data(n: int, root: Path) -> Path:
    """Two Parquet folders of ``n`` ids (half in common) under ``root``, reused if there."""
    folder = root / f"psi-{n}"
    for who, start in (("a", 0), ("b", n // 2)):
        if not (folder / who / "_SUCCESS").exists():
            _write_ids(folder / who, n, start=start)
    return folder


def _psi_table(n: int, args: argparse.Namespace) -> None:
    """Whole PSI at ``n`` ids per party (half in common): each protocol x engine config
    in fresh processes (and a fresh cluster), alternating order by round."""
    with tempfile.TemporaryDirectory(prefix="veil-scale-psi-") as tmp:
        folder = _psi_data(n, args.data or Path(tmp))
        runs = [(p, c) for p in args.protocols.split(",") for c in args.psi_configs.split(",")]
        print(
            f"\nwhole PSI, {n:,} x {n:,} ids (Parquet folders of 10 files, partitions of "
            f"{args.rows:,} rows, {args.inputs}), each party its own process"
            + (f", per-id state in files under {args.spill}" if args.spill else ""),
            flush=True,
        )
        head = (
            "| protocol | engine | round | start UTC | load | wall s | CPU s a / b | cluster CPU s "
            "| CPU-s per 10^6 ids per party | peak RSS MB a / b | Ray worker / daemon peak RSS "
            "MB | bytes sent per id a / b | intersection SHA-256 | cluster processes seen |"
        )
        print(head + "\n" + "|---" * head.count(" | ") + "|---|", flush=True)
        shas: dict[str, set[str]] = {}
        for rnd in range(args.psi_rounds):
            for proto, name in runs if rnd % 2 == 0 else runs[::-1]:
                r = _psi_run(name, folder, proto, args)
                a, b = r["a"], r["b"]
                if a["result"]["size"] != n - n // 2:
                    raise SystemExit(f"wrong intersection size: {r}")
                shas.setdefault(proto, set()).add(a["result"]["sha"])
                cpu = a["cpu_s"] + b["cpu_s"] + r["cluster_cpu"]
                print(json.dumps(r), file=sys.stderr, flush=True)
                print(
                    f"| {proto} | {name} | {rnd} | {r['start_utc']} | {r['load']:.1f} "
                    f"| {max(a['wall_s'], b['wall_s']):.1f} | {a['cpu_s']:.1f} / {b['cpu_s']:.1f} "
                    f"| {r['cluster_cpu']:.1f} | {cpu / 2 / (n / 1e6):.1f} "
                    f"| {a['result']['peak_mb']:.0f} / {b['result']['peak_mb']:.0f} "
                    f"| {r['worker_rss_mb']:.0f} / {r['daemon_rss_mb']:.0f} "
                    f"| {a['bytes_sent'] / n:.1f} / {b['bytes_sent'] / n:.1f} "
                    f"| {a['result']['sha'][:12]} | {r['cluster_procs']:.0f} |",
                    flush=True,
                )
        for proto, seen in shas.items():
            if len(seen) != 1:
                raise SystemExit(f"{proto}: engines gave different intersections: {seen}")
            print(f"{proto}: one intersection across engines, SHA-256 {next(iter(seen))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="bench", choices=["bench", "_drive", "_pair"])
    ap.add_argument("--n", type=int, default=100_000, help="ids in the Parquet directory")
    ap.add_argument("--rows", type=int, default=8192, help="rows per partition")
    ap.add_argument("--configs", default="local,ray1,ray2")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--psi-n", default="", help="ids per party of whole PSI runs: N,N,...")
    ap.add_argument("--protocols", default="ecdh,kkrt", help="whole PSI runs: protocols")
    ap.add_argument("--inputs", default="stream", choices=["stream", "list"])
    ap.add_argument("--psi-configs", default="local,ray1,ray2", help="whole PSI: engines")
    ap.add_argument("--object-store-mb", type=int, default=256, help="whole PSI: per node")
    ap.add_argument("--data", type=Path, help="whole PSI: keep (and reuse) the id folders here")
    ap.add_argument("--psi-rounds", type=int, default=1)
    ap.add_argument("--spill", help="whole PSI: PsiParams.spill_dir of both parties (a folder)")
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
