"""Load test of the node control plane: how fast do nodes agree on jobs?

Starts ``--nodes`` nodes in this process (each a NodeService with its mutual-TLS gRPC
peer endpoint and its own database; no job runs, so only proposal, policy and votes
are measured), every partner auto-approving by policy, then submits ``--jobs`` jobs
from ``--threads`` client threads at the first node. Reports the submit latency
(p50/p95/max), the time until every node saw every job approved, and jobs/s.

    python benchmarks/node.py --nodes 3 --jobs 200 --threads 8 [--database sqlite|memory]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from veil.net.certs import init_ca
from veil.node.admin import init_node, open_store
from veil.node.config import CONFIG, load_config
from veil.node.datasets import add_dataset
from veil.node.model import Event, JobState
from veil.node.peer import GrpcLink, PeerServer
from veil.node.service import NodeService
from veil.node.store import MemoryStore, Store


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Node = tuple[NodeService, PeerServer, GrpcLink]


def _setup(tmp: Path, names: list[str], database: str) -> dict[str, Node]:
    init_ca(tmp / "ca")
    addr = {n: f"127.0.0.1:{_port()}" for n in names}
    services: dict[str, Node] = {}
    for i, n in enumerate(names):
        d = tmp / n
        peers = {m: addr[m] for m in names if m != n}
        init_node(d, name=n, ca_dir=tmp / "ca", peer_listen=addr[n], api="127.0.0.1:1", peers=peers)
        policy = f'\n[[policy.approve]]\npartners = ["{names[0]}"]\nsteps = ["psi"]\n'
        policy += f'datasets = ["{n}_data"]\n'
        (d / CONFIG).write_text((d / CONFIG).read_text() + policy)
        cfg = load_config(d)
        rng = np.random.default_rng(i)
        csv = tmp / f"{n}.csv"
        pd.DataFrame({"id": [f"c{j}" for j in range(100)], "x": rng.normal(size=100)}).to_csv(
            csv, index=False
        )
        store: Store = open_store(cfg)
        add_dataset(store, cfg, f"{n}_data", csv, id_col="id")
        if database == "memory":
            ds = store.dataset(f"{n}_data")
            store.close()
            store = MemoryStore()
            assert ds is not None
            with store.change(Event("dataset.added")) as tx:
                tx.put_dataset(ds)
        link = GrpcLink(cfg)
        svc = NodeService(cfg, store, link)
        services[n] = (svc, PeerServer(cfg, svc.handle), link)
    return services


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--database", choices=("sqlite", "memory"), default="sqlite")
    ap.add_argument("--timeout", type=float, default=300.0, help="give up after S seconds")
    a = ap.parse_args(argv)
    names = ["bank", "bureau", "telco", "insurer", "retailer"][: a.nodes]
    text = "name: bench\nparties:\n" + "".join(f"  {n}: {{dataset: {n}_data}}\n" for n in names)
    text += "steps:\n  - psi: {}\n"
    with tempfile.TemporaryDirectory(prefix="veil-node-bench-") as tmp:
        nodes = _setup(Path(tmp), names, a.database)
        svcs = {n: x[0] for n, x in nodes.items()}
        try:
            lat: list[float] = []
            lock = threading.Lock()

            def one(_: int) -> str:
                t = time.perf_counter()
                job = svcs[names[0]].submit(text, "user:bench")
                with lock:
                    lat.append(time.perf_counter() - t)
                return job.id

            t0 = time.perf_counter()
            with ThreadPoolExecutor(a.threads) as pool:
                ids = list(pool.map(one, range(a.jobs)))
            deadline = time.monotonic() + a.timeout
            pending = {(n, j) for n in names for j in ids}
            while pending and time.monotonic() < deadline:
                for n, j in list(pending):
                    job = svcs[n].store.job(j)
                    if job is not None and job.state == JobState.APPROVED:
                        pending.discard((n, j))
                    elif job is not None and job.state.final:
                        print(f"job {j} on {n}: {job.state.value}: {job.error}", file=sys.stderr)
                        return 1
                time.sleep(0.02)
            total = time.perf_counter() - t0
            if pending:
                print(f"{len(pending)} (node, job) pairs not approved in time", file=sys.stderr)
                return 1
            lat.sort()
            print(
                json.dumps(
                    {
                        "nodes": a.nodes,
                        "jobs": a.jobs,
                        "threads": a.threads,
                        "database": a.database,
                        "submit_p50_ms": round(1000 * statistics.median(lat), 1),
                        "submit_p95_ms": round(1000 * lat[int(0.95 * (len(lat) - 1))], 1),
                        "submit_max_ms": round(1000 * lat[-1], 1),
                        "all_approved_s": round(total, 2),
                        "jobs_per_s": round(a.jobs / total, 1),
                    }
                )
            )
        finally:
            for svc, server, link in nodes.values():
                server.stop()
                link.close()
                svc.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
