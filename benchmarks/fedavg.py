"""Horizontal FedAvg: Veil (with and without secure aggregation) beside Flower, and the
cost of SecAgg+ as the federation grows.

    python benchmarks/fedavg.py [--flower-venv /tmp/flwr-venv --flower-dir /tmp/peers/flower]
        [--skip-flower] [--scaling 10,50,100] [--params 100000] [--out results.json]

(a) The Flower harness's task (``shared/peers/flower/fedavg_lr.py``): synth20k
    (``make_classification(20000, 30, n_informative=15, n_redundant=5, random_state=0)``,
    80/20 stratified split with seed 42, z-scored on train), 3 clients holding
    ``np.array_split`` of a seed-0 permutation of the training rows, 10 rounds of 5
    full-batch gradient steps (lr 0.5) on logistic regression, test AUC at the end.
    Veil runs it as a job (``veil run``: one OS process per party, mutual-TLS gRPC on
    loopback, a data-less hub aggregating and scoring the test rows), with
    ``secure_aggregation`` true and false; Flower 1.42 runs its simulation (Ray) plain and
    with its SecAgg+ workflow, in the same session. Wall time is the whole run (process
    start and connection included on both sides); Veil's step time (schema check, secure
    aggregation's setup, every round) and median round time come from its report,
    Flower's time for its rounds from its summary line ("Run finished 10 round(s) in").
(b) Veil's secure-aggregation overhead per round on the example jobs (AML, default_credit)
    and on (a): median round seconds with and without secure aggregation.
(c) Scaling: one SecAgg+ round of ``--params`` values for 10, 50 and 100 simulated banks
    (threads over the in-memory transport, one process): each bank's CPU seconds and
    bytes sent + received, the aggregator's CPU seconds, with the SecAgg+ neighbour count
    k and, for contrast, the complete graph of SecAgg (k = n - 1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from veil.jobs import RunOptions, load_job, run_job
from veil.net import Session, run_parties
from veil.protocols.secagg import (
    AGGREGATOR,
    SecAggParams,
    aggregate,
    contribute,
    default_neighbours,
    make_plan,
    setup_aggregator,
    setup_client,
)

ROOT = Path(__file__).resolve().parents[1]


# -- (a) the Flower harness's task ---------------------------------------------------------


def synth20k(folder: Path, clients: int) -> None:
    """The harness's data, as CSV tables: one per client and the test rows."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    X, y = make_classification(
        n_samples=20000, n_features=30, n_informative=15, n_redundant=5, random_state=0
    )
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-12
    Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    parts = np.array_split(np.random.default_rng(0).permutation(len(ytr)), clients)

    def table(X: np.ndarray, y: np.ndarray, prefix: str) -> pd.DataFrame:
        df = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
        df.insert(0, "y", y)
        df.insert(0, "id", [f"{prefix}{i}" for i in range(len(y))])
        return df

    for c, rows in enumerate(parts):
        table(Xtr[rows], ytr[rows], f"c{c}-").to_csv(folder / f"client{c}.csv", index=False)
    table(Xte, yte, "t").to_csv(folder / "test.csv", index=False)


def veil_job(folder: Path, clients: int, secure: bool, rounds: int) -> Path:
    """The task as a Veil job file (``secure_aggregation`` on or off)."""
    parties: dict[str, Any] = {"hub": {"test": "test.csv", "id": "id", "label": "y"}}
    for c in range(clients):
        parties[f"client{c}"] = {"data": f"client{c}.csv", "id": "id", "label": "y"}
    fed = {
        "rounds": rounds,
        "local_epochs": 5,
        "batch_size": 100_000,  # full batch, as the harness
        "learning_rate": 0.5,
        "validation_share": 0.0,
        "standardize": False,  # the tables are z-scored already
        "secure_aggregation": secure,
        "seed": 0,  # else the jobs layer derives one from the job, which differs
    }
    job = {"name": "fedavg-bench", "parties": parties, "steps": [{"fedavg": fed}]}
    path = folder / f"job_{'sec' if secure else 'plain'}.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def alternating(jobs: dict[str, Path], out: Path, repeat: int) -> dict[str, Any]:
    """``repeat`` runs of each job, one of each in turn (so the machine's load moves
    them alike): the median of each timing, the last run's other figures, and the
    per-turn ratio of median round times of the first job over the second."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in jobs}
    for i in range(repeat):
        for k, path in jobs.items():
            runs[k].append(_run(path, out / f"{k}-{i}"))
    res: dict[str, Any] = {}
    for k, rs in runs.items():
        res[k] = dict(rs[-1])
        for key in ("wall_s", "step_s", "round_s_median"):
            res[k][key] = round(float(np.median([r[key] for r in rs])), 5)
        res[k]["round_s_medians"] = [r["round_s_median"] for r in rs]
        res[k]["runs"] = repeat
    a, b = list(jobs)[:2]
    res["ratio"] = round(res[a]["round_s_median"] / res[b]["round_s_median"], 3)
    res["ratio_per_turn"] = [
        round(x["round_s_median"] / y["round_s_median"], 3)
        for x, y in zip(runs[a], runs[b], strict=True)
    ]
    return res


def _run(job_path: Path, out: Path, tries: int = 3) -> dict[str, Any]:
    for attempt in range(tries):  # loopback ports are picked free, but a busy shared
        t0 = time.perf_counter()  # machine may take one before the worker binds it
        res = run_job(load_job(job_path), out.with_suffix(f".{attempt}"), RunOptions(timeout=300))
        wall = time.perf_counter() - t0
        if res.ok:
            break
        print(f"veil run failed (try {attempt + 1}): {res.error}", file=sys.stderr)
    else:
        raise SystemExit(f"veil run failed {tries} times: {res.error}")
    out = out.with_suffix(f".{attempt}")
    step = res.report["steps"][0]
    model = json.loads((out / "hub" / "model.json").read_text())
    rounds = [r["seconds"] for r in model["rounds"]]
    test = pd.read_csv(job_path.parent / "test.csv") if "job_" in job_path.name else None
    auc_test = None
    if test is not None:  # the harness's task: score the test rows with the hub's model
        from veil.ml.horizontal import load_model
        from veil.ml.metrics import auc

        auc_test = auc(test["y"], load_model(out / "hub" / "model.json").score_frame(test))
    elif len(res.report["steps"]) > 1:
        auc_test = res.report["steps"][1]["party_outputs"].get("hub", {}).get("auc_test")
    traffic = step["traffic"]
    banks = [p for p in traffic if p != "hub"]
    per_bank = np.mean([traffic[b]["bytes_sent"] + traffic[b]["bytes_received"] for b in banks])
    return {
        "wall_s": round(wall, 3),
        "step_s": step["seconds"],
        "round_s_median": round(float(np.median(rounds)), 5),
        "rounds": len(rounds),
        "auc_test": auc_test,
        "bytes_per_bank_per_round": round(per_bank / max(len(rounds), 1)),
    }


def flower(venv: Path, harness: Path, clients: int, rounds: int, secagg: bool) -> dict[str, Any]:
    """One run of the Flower harness (its own wall clock and test AUC)."""
    out = Path(tempfile.mkdtemp()) / "flower.json"
    cmd = [str(venv / "bin" / "python"), str(harness / "fedavg_lr.py"), "--dataset", "synth20k",
           "--clients", str(clients), "--rounds", str(rounds), "--out", str(out)]  # fmt: skip
    if secagg:
        cmd.append("--secagg")
    t0 = time.perf_counter()
    run = subprocess.run(cmd, check=True, capture_output=True, cwd=harness, timeout=900, text=True)
    wall = time.perf_counter() - t0
    res = json.loads(out.read_text())
    found = re.search(r"Run finished \d+ round\(s\) in ([0-9.]+)s", run.stdout + run.stderr)
    return {
        "wall_s": round(wall, 3),
        "sim_wall_s": round(res["sim_wall_seconds"], 3),
        "rounds_s": float(found.group(1)) if found else None,  # Flower's own summary line
        "auc_test": res["final_test_auc"],
    }


# -- (b) overhead on the example jobs -----------------------------------------------------------


def example_overhead(name: str, folder: Path, repeat: int) -> dict[str, Any]:
    """Median round seconds of an example job with and without secure aggregation."""
    src = yaml.safe_load((ROOT / "examples" / name).read_text())
    paths: dict[str, Path] = {}
    for secure in (True, False):
        job = json.loads(json.dumps(src))
        for p in job["parties"].values():
            for key in ("data", "test"):
                if key in p:
                    p[key] = str(ROOT / "examples" / p[key])
        job["steps"][0]["fedavg"]["secure_aggregation"] = secure
        job["steps"][0]["fedavg"].setdefault("seed", 0)  # the same rows held out, same init
        path = folder / f"{name}.{secure}.yaml"
        path.write_text(yaml.safe_dump(job, sort_keys=False))
        paths["secure" if secure else "plain"] = path
    return alternating(paths, folder / f"out-{name}", repeat)


# -- (c) scaling --------------------------------------------------------------------------------


def secagg_round(n: int, dim: int, neighbours: int | None) -> dict[str, Any]:
    """SecAgg+'s setup and one sum of ``n`` banks over ``dim`` values (threads, memory
    transport): each bank's CPU seconds and bytes (sent + received) in each part."""
    rng = np.random.default_rng(0)
    xs = {f"b{i:03d}": rng.normal(size=dim) for i in range(n)}
    params = SecAggParams(neighbours=neighbours)
    k = len(make_plan(list(xs), params).graph["b000"])
    traffic: dict[tuple[int, str], int] = defaultdict(int)
    lock = threading.Lock()
    cpu: dict[tuple[str, str], float] = {}

    def tap(src: int, dst: int, key: str, payload: bytes) -> None:
        part = "sum" if ".sum0/" in key else "setup"
        with lock:
            traffic[src, part] += len(payload)
            traffic[dst, part] += len(payload)

    def bank(name: str) -> Any:
        def run(s: Session) -> Any:
            t0 = time.thread_time()
            keys = setup_client(s, 1, params)
            t1 = time.thread_time()
            out = contribute(s, keys, xs[name])
            cpu[name, "setup"], cpu[name, "sum"] = t1 - t0, time.thread_time() - t1
            return out

        return run

    def agg(s: Session) -> Any:
        t0 = time.thread_time()
        st = setup_aggregator(s, 1, params)
        t1 = time.thread_time()
        out = aggregate(s, st, dim)
        cpu["agg", "setup"], cpu["agg", "sum"] = t1 - t0, time.thread_time() - t1
        return out

    targets = {b: bank(b) for b in xs} | {"agg": agg}
    t0 = time.perf_counter()
    out = run_parties(
        targets, parties=["agg", *xs], roles={AGGREGATOR: "agg"}, timeout=600, tap=tap
    )
    wall = time.perf_counter() - t0
    err = float(np.abs(out["agg"].total - sum(xs.values())).max())
    ranks = range(1, n + 1)

    def mean_cpu(part: str) -> float:
        return round(float(np.mean([cpu[b, part] for b in xs])), 4)

    return {
        "banks": n,
        "neighbours": k,
        "bank_cpu_setup_s": mean_cpu("setup"),
        "bank_cpu_sum_s": mean_cpu("sum"),
        "bank_bytes_setup": round(float(np.mean([traffic[r, "setup"] for r in ranks]))),
        "bank_bytes_sum": round(float(np.mean([traffic[r, "sum"] for r in ranks]))),
        "aggregator_cpu_s": round(cpu["agg", "setup"] + cpu["agg", "sum"], 3),
        "wall_s": round(wall, 3),
        "max_abs_error": err,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flower-venv", type=Path, default=Path("/tmp/flwr-venv"))
    ap.add_argument("--flower-dir", type=Path, default=Path("/tmp/peers/flower"))
    ap.add_argument("--skip-flower", action="store_true")
    ap.add_argument("--skip-examples", action="store_true")
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--scaling", default="10,50,100")
    ap.add_argument("--params", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each Veil job (medians)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results: dict[str, Any] = {"load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        synth20k(folder, args.clients)
        jobs = {
            "veil_secagg": veil_job(folder, args.clients, True, args.rounds),
            "veil_plain": veil_job(folder, args.clients, False, args.rounds),
        }
        task: dict[str, Any] = alternating(jobs, folder / "out", args.repeat)
        task["round_ratio"] = task.pop("ratio")
        if not args.skip_flower:
            task["flower_plain"] = flower(args.flower_venv, args.flower_dir, args.clients,
                                          args.rounds, False)  # fmt: skip
            task["flower_secagg"] = flower(args.flower_venv, args.flower_dir, args.clients,
                                           args.rounds, True)  # fmt: skip
        results["synth20k"] = task
        print(json.dumps({"synth20k": task}, indent=1), flush=True)
        if not args.skip_examples:
            for name in ("aml.yaml", "horizontal_credit.yaml"):
                results[name] = example_overhead(name, folder, args.repeat)
                print(json.dumps({name: results[name]}, indent=1), flush=True)
    scaling = []
    for n in (int(v) for v in args.scaling.split(",") if v):  # --scaling "": none
        complete = default_neighbours(n) == n - 1  # SecAgg+ is SecAgg at this size
        for k in (None,) if complete else (None, n - 1):
            row = secagg_round(n, args.params, k)
            row["graph"] = "SecAgg+" if k is None else "complete (SecAgg)"
            scaling.append(row)
            print(json.dumps(row), flush=True)
    results["scaling"] = scaling
    results["load_average_end"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
