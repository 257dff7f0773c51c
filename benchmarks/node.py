"""The Veil node against ``veil run``, and the node under load (issue 18).

Two nodes (``bank``, ``partner``) run as OS processes (``veil node start``) on
loopback, each with its SQLite database; the partner approves the bank's jobs by
policy. Two measurements, each printed as one JSON line:

``overhead``: the demo job (``examples/credit_risk.yaml``) through the two nodes and
with ``veil run`` on the same data, alternating which runs first, ``--rounds`` each.
The node's time is from the submit call to the job's last ``job.succeeded`` event
(on either node); ``veil run``'s is the command's wall time. Also the
proposal-to-start latency: the bank's ``job.submitted`` event to the last node's
``job.running``.

``load``: ``--jobs`` small PSI jobs (``--rows`` ids each side) submitted at once (one
thread each) to the bank's API while a probe reads the API (``GET /v1/jobs/{id}``,
``GET /v1/jobs``, ``GET /v1/health`` in turn, one call at a time) until every job has
ended on both nodes; reports how many succeeded, the probe's latency percentiles, the
submit latencies and small jobs per minute. The same probe runs ``--idle`` seconds
before the jobs, side by side: what the machine's own load allows the API.

    python benchmarks/node.py overhead --rounds 3
    python benchmarks/node.py load --jobs 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml

from veil.net.certs import init_ca
from veil.node.admin import init_node, open_store
from veil.node.config import CONFIG, TOKEN_FILE, load_config
from veil.node.datasets import add_dataset

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "credit_risk.yaml"
NAMES = ("bank", "partner")
FINAL = {"succeeded", "failed", "cancelled", "rejected"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    """One node's API with its admin token."""

    def __init__(self, node_dir: Path) -> None:
        cfg = load_config(node_dir)
        token = (node_dir / TOKEN_FILE).read_text().strip()
        self.base = f"http://{cfg.api}/v1"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.Client(base_url=self.base, headers=self.headers, timeout=60.0)

    def get(self, path: str) -> Any:
        r = self.http.get(path)
        r.raise_for_status()
        return r.json()

    def submit(self, text: str) -> str:
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=120.0) as c:
            r = c.post("/jobs", json={"text": text})
        r.raise_for_status()
        return str(r.json()["id"])


def _setup(tmp: Path, data: dict[str, tuple[Path, str | None]]) -> dict[str, Path]:
    """Two node folders; ``data``: dataset name per node -> (file, label)."""
    init_ca(tmp / "ca")
    addr = {n: (f"127.0.0.1:{_port()}", f"127.0.0.1:{_port()}") for n in NAMES}
    dirs = {}
    for n in NAMES:
        d = tmp / n
        peers = {m: addr[m][0] for m in NAMES if m != n}
        init_node(d, name=n, ca_dir=tmp / "ca", peer_listen=addr[n][0], api=addr[n][1], peers=peers)
        if n == "partner":
            mine = json.dumps([ds for ds in data if ds.startswith(n)])
            rule = f'\n[[policy.approve]]\npartners = ["bank"]\nsteps = ["*"]\ndatasets = {mine}\n'
            (d / CONFIG).write_text((d / CONFIG).read_text() + rule)
        cfg = load_config(d)
        store = open_store(cfg)
        try:
            for ds, (path, label) in data.items():
                if ds.startswith(n):
                    add_dataset(store, cfg, ds, path, id_col="id", label_col=label)
        finally:
            store.close()
        dirs[n] = d
    return dirs


@contextmanager
def _nodes(dirs: dict[str, Path]) -> Iterator[dict[str, Api]]:
    procs = []
    try:
        for d in dirs.values():
            log = (d / "node.log").open("ab")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "veil.cli", "node", "start", str(d)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(os.environ, PYTHONUNBUFFERED="1"),
                )
            )
        apis = {n: Api(d) for n, d in dirs.items()}
        for n, api in apis.items():
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    api.get("/health")
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"node {n} did not start: see {dirs[n] / 'node.log'}")
                time.sleep(0.2)
        yield apis
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait(apis: dict[str, Api], job_id: str, timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sts = {n: a.get(f"/jobs/{job_id}") for n, a in apis.items()}
        if all(s["state"] in FINAL for s in sts.values()):
            return sts
        _check_votes(sts["partner"])
        time.sleep(0.2)
    raise SystemExit(f"job {job_id} did not end within {timeout} s")


def _check_votes(st: dict[str, Any]) -> None:
    vote = st["parties"]["partner"]
    if vote["vote"] == "pending" and vote["reason"].startswith("waiting for an approver"):
        raise SystemExit(f"the partner's policy does not approve the job: {vote['reason']}")


def _event_times(apis: dict[str, Api], job_id: str) -> dict[str, dict[str, float]]:
    return {
        n: {e["kind"]: float(e["at"]) for e in a.get(f"/jobs/{job_id}/events")}
        for n, a in apis.items()
    }


def _load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    spec = yaml.safe_load(DEMO.read_text())
    data = {}
    assert tuple(spec["parties"]) == NAMES, "the demo's parties are the nodes' names"
    for p in NAMES:
        party = spec["parties"][p]
        data[f"{p}_demo"] = ((DEMO.parent / party["data"]).resolve(), party.get("label"))
    node_job = {**spec, "parties": {p: {"dataset": f"{p}_demo"} for p in NAMES}}
    text = yaml.safe_dump(node_job, sort_keys=False)  # the same steps; party names as nodes
    run: list[float] = []
    node: list[float] = []
    start: list[float] = []
    with tempfile.TemporaryDirectory(prefix="veil-node-bench-") as tmp:
        dirs = _setup(Path(tmp), data)
        with _nodes(dirs) as apis:
            for r in range(args.rounds):
                order = ["node", "run"] if r % 2 == 0 else ["run", "node"]
                for who in order:
                    if who == "run":
                        out = Path(tmp) / f"run{r}"
                        t0 = time.perf_counter()
                        subprocess.run(
                            [sys.executable, "-m", "veil.cli", "run", str(DEMO), "--out", str(out)],
                            check=True,
                            capture_output=True,
                        )
                        run.append(time.perf_counter() - t0)
                        shutil.rmtree(out, ignore_errors=True)
                    else:
                        t0 = time.time()
                        job_id = apis["bank"].submit(text)
                        sts = _wait(apis, job_id, args.timeout)
                        bad = {n: s["error"] for n, s in sts.items() if s["state"] != "succeeded"}
                        if bad:
                            raise SystemExit(f"node job failed: {bad}")
                        ev = _event_times(apis, job_id)
                        node.append(max(e["job.succeeded"] for e in ev.values()) - t0)
                        start.append(
                            max(e["job.running"] for e in ev.values()) - ev["bank"]["job.submitted"]
                        )
                    print(f"round {r} {who}: done", file=sys.stderr, flush=True)
    med_run, med_node = statistics.median(run), statistics.median(node)
    return {
        "bench": "overhead",
        "job": str(DEMO.relative_to(REPO)),
        "rounds": args.rounds,
        "veil_run_s": [round(x, 2) for x in run],
        "node_s": [round(x, 2) for x in node],
        "veil_run_median_s": round(med_run, 2),
        "node_median_s": round(med_node, 2),
        "node_overhead_pct": round(100 * (med_node / med_run - 1), 1),
        "proposal_to_start_s": [round(x, 3) for x in start],
        "proposal_to_start_median_s": round(statistics.median(start), 3),
        "load_avg": _load_avg(),
    }


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return round(1000 * s[min(len(s) - 1, int(q * len(s)))], 1)


def load(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="veil-node-load-") as tmp:
        data = {}
        for i, n in enumerate(NAMES):
            rng = np.random.default_rng(i)
            ids = [f"c{j}" for j in range(i * args.rows // 2, i * args.rows // 2 + args.rows)]
            df = pd.DataFrame({"id": ids, "x": rng.normal(size=args.rows).round(4)})
            csv = Path(tmp) / f"{n}.csv"
            df.to_csv(csv, index=False)
            data[f"{n}_small"] = (csv, None)
        dirs = _setup(Path(tmp), data)
        text = "name: small-psi\nparties:\n"
        text += "".join(f"  {n}: {{dataset: {n}_small}}\n" for n in NAMES)
        text += "steps:\n  - psi: {}\n"
        with _nodes(dirs) as apis:
            ids: list[str] = []
            submit_s: list[float] = []
            lock = threading.Lock()
            probe: list[float] = []
            done = threading.Event()

            def submit() -> None:
                t = time.perf_counter()
                job_id = apis["bank"].submit(text)
                with lock:
                    submit_s.append(time.perf_counter() - t)
                    ids.append(job_id)

            def read(probe: list[float], done: threading.Event) -> None:
                api = Api(dirs["bank"])
                k = 0
                while not done.is_set():
                    with lock:
                        pick = random.choice(ids) if ids else None
                    path = ["/health", "/jobs", f"/jobs/{pick}"][k % 3] if pick else "/health"
                    t = time.perf_counter()
                    api.get(path)
                    probe.append(time.perf_counter() - t)
                    k += 1
                    time.sleep(0.02)

            idle: list[float] = []  # the same probe with no job: what the machine allows
            quiet = threading.Event()
            idle_reader = threading.Thread(target=read, args=(idle, quiet), daemon=True)
            idle_reader.start()
            time.sleep(args.idle)
            quiet.set()
            idle_reader.join(5)
            load0 = _load_avg()
            reader = threading.Thread(target=read, args=(probe, done), daemon=True)
            reader.start()
            t0 = time.perf_counter()
            threads = [threading.Thread(target=submit) for _ in range(args.jobs)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            states: dict[str, dict[str, str]] = {}
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                states = {n: {j["id"]: j["state"] for j in a.get("/jobs")} for n, a in apis.items()}
                if all(states[n].get(j) in FINAL for n in NAMES for j in ids):
                    break
                _check_votes(apis["partner"].get(f"/jobs/{ids[0]}"))
                counts = {n: sorted(states[n].values()).count("succeeded") for n in NAMES}
                print(f"succeeded so far: {counts}", file=sys.stderr, flush=True)
                time.sleep(2.0)
            total = time.perf_counter() - t0
            done.set()
            reader.join(5)
            ok = sum(all(states[n].get(j) == "succeeded" for n in NAMES) for j in ids)
            errors = sorted(
                {
                    f"{n}: {s['error']}"
                    for n, a in apis.items()
                    for s in a.get("/jobs")
                    if s["state"] != "succeeded"
                }
            )
            return {
                "bench": "load",
                "jobs": args.jobs,
                "rows": args.rows,
                "succeeded_on_both": ok,
                "lost": args.jobs - len(ids),
                "errors": errors,
                "all_ended_s": round(total, 2),
                "jobs_per_min": round(60 * ok / total, 1),
                "api_probe_calls": len(probe),
                "api_p50_ms": _pct(probe, 0.5),
                "api_p95_ms": _pct(probe, 0.95),
                "api_p99_ms": _pct(probe, 0.99),
                "api_max_ms": round(1000 * max(probe), 1),
                "idle_probe_calls": len(idle),
                "idle_api_p50_ms": _pct(idle, 0.5),
                "idle_api_p99_ms": _pct(idle, 0.99),
                "submit_p50_ms": _pct(submit_s, 0.5),
                "submit_max_ms": round(1000 * max(submit_s), 1),
                "load_avg_before": load0,
                "load_avg_after": _load_avg(),
            }


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # the nodes are stopped on the way out


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop)
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    o = sub.add_parser("overhead", help="the demo job: two nodes vs veil run, alternating")
    o.add_argument("--rounds", type=int, default=3)
    o.add_argument("--timeout", type=float, default=1800.0)
    ld = sub.add_parser("load", help="small PSI jobs submitted at once; API latency meanwhile")
    ld.add_argument("--jobs", type=int, default=20)
    ld.add_argument("--rows", type=int, default=200)
    ld.add_argument("--timeout", type=float, default=900.0)
    ld.add_argument("--idle", type=float, default=15.0, help="seconds probed before the jobs")
    args = ap.parse_args(argv)
    result = overhead(args) if args.what == "overhead" else load(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
