"""SecureBoost benchmark: Veil vs SecretFlow SGB, FATE HeteroSecureBoost and XGBoost.

(a) synth20k: the peers' 16,000 x 30 split (guest: y + 10 features, host: 20),
    5 trees, depth 3, 2048-bit keys; (b) default_credit, 10 trees, depth 5, 32 bins.
Veil runs both parties in this process over the in-memory transport; wall time,
CPU time and peak RSS of this process and its HE worker processes (both parties),
bytes exchanged (every frame, both directions) and test AUC. Peers run through the
shared/peers harnesses, set up as shared/peers/README.md says: a copy of the folder at
``--peers-dir`` (default /tmp/peers, with ``fate/make_data.py`` run, which the synth case
reads too), venvs at ``--sf-venv`` (/tmp/sf-venv) and ``--fate-venv`` (/tmp/fate-venv).
The credit case reads ``--data`` (default ../shared/data beside the repository).
With ``--repeat N`` every system runs N times, Veil and the others in the opposite
order to the round before (``--first`` picks round 0's).

    python benchmarks/secureboost.py --case synth --peers sf [--repeat 2]
    python benchmarks/secureboost.py --case credit
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
from _bench import FATE_VENV, PEERS_DIR, SF_VENV, add_order_args, data_dir, in_order, need
from sklearn.metrics import roc_auc_score

from veil.crypto import he as he_engine
from veil.ml.secureboost import (
    HEScheme,
    Objective,
    SBTParams,
    run_label_holder,
    run_partner,
    run_predict_label_holder,
    run_predict_partner,
)
from veil.net.local import run_parties

ROLES = {"label_holder": "guest", "partner": "host"}


def load_peer_split(peers: Path, name: str) -> dict[str, np.ndarray]:
    how = "copy shared/peers there and run fate/make_data.py (shared/peers/README.md)"
    d = need(peers / "fate" / "data", "the peers' data", how)
    out: dict[str, np.ndarray] = {}
    for split, suffix in (("train", ""), ("test", "_te")):
        g = pd.read_csv(d / f"{name}_{split}_guest.csv").sort_values("id")
        h = pd.read_csv(d / f"{name}_{split}_host.csv").set_index("id").loc[g["id"]]
        out["xa" + suffix] = g.drop(columns=["id", "y"]).to_numpy(np.float64)
        out["y" + suffix] = g["y"].to_numpy(np.float64)
        out["xb" + suffix] = h.to_numpy(np.float64)
    return out


def load_credit(data: Path) -> dict[str, np.ndarray]:
    g = pd.read_csv(data / "default_credit_hetero_guest.csv")
    h = pd.read_csv(data / "default_credit_hetero_host.csv").set_index("id").loc[g["id"]]
    xa, xb = g.drop(columns=["id", "y"]).to_numpy(float), h.to_numpy(float)
    y = g["y"].to_numpy(float)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[: int(0.7 * len(y))], idx[int(0.7 * len(y)) :]
    return {"xa": xa[tr], "xb": xb[tr], "y": y[tr], "xa_te": xa[te], "xb_te": xb[te], "y_te": y[te]}


class Usage:
    """CPU seconds and peak RSS of this process plus its HE worker processes (sampled)."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _procs(self) -> list[psutil.Process]:
        return [self.me, *self.me.children(recursive=True)]

    def cpu(self) -> float:
        total = 0.0
        for pr in self._procs():
            try:
                t = pr.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        while not self.stop.wait(0.2):
            rss = 0
            for pr in self._procs():
                with contextlib.suppress(psutil.Error):
                    rss += pr.memory_info().rss
            self.peak = max(self.peak, rss)


def run_veil(d: dict[str, np.ndarray], p: SBTParams) -> dict[str, Any]:
    na = [f"g{i}" for i in range(d["xa"].shape[1])]
    nb = [f"h{i}" for i in range(d["xb"].shape[1])]
    traffic = [0, 0]

    def tap(src: int, dst: int, key: str, payload: bytes) -> None:
        traffic[0] += len(payload)
        traffic[1] += 1

    use = Usage()
    use.thread.start()
    c0, t0 = use.cpu(), time.perf_counter()
    models = run_parties(
        {
            "guest": lambda s: run_label_holder(s, d["xa"], d["y"], na, p),
            "host": lambda s: run_partner(s, d["xb"], nb, p),
        },
        roles=ROLES,
        tap=tap,
        timeout=3600,
    )
    fit, cpu = time.perf_counter() - t0, use.cpu() - c0
    use.stop.set()
    t1 = time.perf_counter()
    scores = run_parties(
        {
            "guest": lambda s: run_predict_label_holder(s, models["guest"], d["xa_te"]),
            "host": lambda s: run_predict_partner(s, models["host"], d["xb_te"]),
        },
        roles=ROLES,
    )["guest"]
    return {
        "framework": "veil",
        "fit_seconds": round(fit, 2),
        "cpu_seconds": round(cpu, 2),
        "s_per_tree": round(fit / max(len(models["guest"].trees), 1), 2),
        "bytes": traffic[0],
        "frames": traffic[1],
        "predict_seconds": round(time.perf_counter() - t1, 2),
        "peak_rss_mb": round(use.peak / 2**20),
        "workers": he_engine.get_workers(),
        "test_auc": round(float(roc_auc_score(d["y_te"], scores)), 4),
        "he": str(p.he),
        "key_bits": p.key_bits,
    }


def run_veil_job(d: dict[str, np.ndarray], p: SBTParams) -> dict[str, Any]:
    """Production mode: ``veil run`` of a one-step job, one worker process per party over
    mutual-TLS gRPC on loopback (as SecretFlow's harness runs one process per party).

    Trains on the training rows; the test rows are then scored with the two saved
    model files (joint prediction, in this process)."""
    import tempfile

    import yaml

    from veil.jobs import RunOptions, load_job, run_job
    from veil.ml.secureboost import load

    tmp = Path(tempfile.mkdtemp(prefix="sbt-bench-"))
    ids = np.arange(d["y"].shape[0])
    g = pd.DataFrame(d["xa"], columns=[f"g{i}" for i in range(d["xa"].shape[1])])
    g.insert(0, "y", d["y"].astype(int))
    g.insert(0, "id", ids)
    h = pd.DataFrame(d["xb"], columns=[f"h{i}" for i in range(d["xb"].shape[1])])
    h.insert(0, "id", ids)
    g.to_csv(tmp / "guest.csv", index=False, float_format="%.17g")
    h.to_csv(tmp / "host.csv", index=False, float_format="%.17g")
    step = _params_json(p)
    step["test_size"] = 0.0
    job = {
        "name": "sbt-bench",
        "parties": {
            "guest": {"data": "guest.csv", "id": "id", "label": "y"},
            "host": {"data": "host.csv", "id": "id"},
        },
        "steps": [{"secureboost": step}],
    }
    (tmp / "job.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    use = Usage()
    use.thread.start()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = run_job(load_job(tmp / "job.yaml"), tmp / "out", RunOptions(timeout=3600))
    wall = time.perf_counter() - t0
    use.stop.set()
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not res.ok:
        return {"framework": "veil (veil run)", "error": res.error}
    st = res.report["steps"][0]
    fit = st["outputs"].get("fit_seconds")
    models = {q: load(tmp / "out" / q / "secureboost_model.json") for q in ("guest", "host")}
    scores = run_parties(
        {
            "guest": lambda s: run_predict_label_holder(s, models["guest"], d["xa_te"]),
            "host": lambda s: run_predict_partner(s, models["host"], d["xb_te"]),
        },
        roles=ROLES,
    )["guest"]
    sent = sum(t["bytes_sent"] for t in st["traffic"].values())
    return {
        "framework": "veil (veil run: 2 worker processes, mTLS gRPC)",
        "fit_seconds": fit,  # training only, as the peers' harnesses report
        "step_seconds": round(float(st["seconds"]), 2),
        "job_wall_seconds": round(wall, 2),
        "cpu_seconds": round(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime, 2),
        "s_per_tree": round(float(fit or st["seconds"]) / p.n_trees, 2),
        "bytes": sent,
        "peak_rss_mb": round(use.peak / 2**20),
        "test_auc": round(float(roc_auc_score(d["y_te"], scores)), 4),
        "he": str(p.he),
        "key_bits": p.key_bits,
    }


def _params_json(p: SBTParams) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in dataclasses.asdict(p).items():
        out[k] = str(v) if isinstance(v, HEScheme | Objective) else v
    if p.class_weight is not None:
        out["class_weight"] = list(p.class_weight)
    return out


def run_xgboost(d: dict[str, np.ndarray], p: SBTParams) -> dict[str, Any]:
    import xgboost as xgb

    clf = xgb.XGBClassifier(
        n_estimators=p.n_trees,
        max_depth=p.max_depth,
        learning_rate=p.learning_rate,
        max_bin=p.max_bin,
        tree_method="hist",
        reg_lambda=p.reg_lambda,
        min_child_weight=p.min_child_weight,
        n_jobs=1,
    )
    t0 = time.perf_counter()
    clf.fit(np.hstack([d["xa"], d["xb"]]), d["y"])
    fit = time.perf_counter() - t0
    s = clf.predict_proba(np.hstack([d["xa_te"], d["xb_te"]]))[:, 1]
    return {
        "framework": "xgboost (joined, plaintext)",
        "fit_seconds": round(fit, 3),
        "test_auc": round(float(roc_auc_score(d["y_te"], s)), 4),
    }


def run_secretflow(
    peers: Path, venv: str, dataset: str, *, trees: int, depth: int, bits: int, port: int
) -> dict[str, Any]:
    here = peers / "secretflow"
    env = dict(os.environ, VENV=venv)
    (here / "results" / "sb_sgb.json").unlink(missing_ok=True)  # never read an old run
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            "./run_pair.sh",
            "sb_sgb",
            "--algo",
            "sgb",
            "--dataset",
            dataset,
            "--trees",
            str(trees),
            "--depth",
            str(depth),
            "--bits",
            str(bits),
            "--port",
            str(port),
        ],
        cwd=here,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    try:
        res = json.loads((here / "results" / "sb_sgb.json").read_text())
    except FileNotFoundError:
        return {"framework": "secretflow", "error": out.stdout[-2000:] + out.stderr[-2000:]}
    res["process_wall_seconds"] = round(wall, 1)
    return res


def run_fate(peers: Path, venv: str, dataset: str, trees: int, depth: int) -> dict[str, Any]:
    here = peers / "fate"
    outp = here / "results" / "sb_sbt.json"
    outp.unlink(missing_ok=True)  # never read an old run
    cmd = [
        f"{venv}/bin/python",
        "sbt_launcher.py",
        "--parties",
        "guest:9911",
        "host:10011",
        "--log_level",
        "WARNING",
        "--data_dir",
        str(here / "fate_data"),
        "--dataset",
        dataset,
        "--num_trees",
        str(trees),
        "--max_depth",
        str(depth),
        "--out",
        str(outp),
    ]
    out = subprocess.run(cmd, cwd=here, capture_output=True, text=True, check=False)
    try:
        return json.loads(outp.read_text())
    except FileNotFoundError:
        return {"framework": "fate", "error": out.stdout[-2000:] + out.stderr[-2000:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=["synth", "credit"], default="synth")
    ap.add_argument("--peers", default="", help="comma list: sf,fate")
    ap.add_argument("--peers-dir", default=PEERS_DIR, help=f"default {PEERS_DIR}")
    ap.add_argument("--sf-venv", default=SF_VENV, help=f"default {SF_VENV}")
    ap.add_argument("--fate-venv", default=FATE_VENV, help=f"default {FATE_VENV}")
    ap.add_argument("--data", help="folder of default_credit_hetero_*.csv (default shared/data)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds (the order alternates)")
    add_order_args(ap)
    ap.add_argument("--he", default="ou", choices=[s.value for s in HEScheme])
    ap.add_argument("--bits", type=int, default=2048)
    ap.add_argument("--trees", type=int, default=0)
    ap.add_argument("--depth", type=int, default=0)
    ap.add_argument("--port", type=int, default=23500)
    ap.add_argument("--skip-veil", action="store_true")
    ap.add_argument(
        "--mode",
        choices=["threads", "job", "both"],
        default="both",
        help="veil in one process (threads) and/or through veil run (job)",
    )
    ap.add_argument("--workers", type=int, default=0, help="HE worker processes (0: all cores)")
    a = ap.parse_args()
    if a.workers:
        he_engine.set_workers(a.workers)
    peers = Path(a.peers_dir)
    if a.case == "synth":
        d = load_peer_split(peers, "synth20k")
        # SecretFlow's harness: lr 0.3, reg_lambda 0.1, sketch_eps 1/32 (32 bins)
        p = SBTParams(
            n_trees=a.trees or 5,
            max_depth=a.depth or 3,
            learning_rate=0.3,
            reg_lambda=0.1,
            max_bin=32,
            he=HEScheme(a.he),
            key_bits=a.bits,
        )
    else:
        d = load_credit(data_dir(a.data))
        p = SBTParams(
            n_trees=a.trees or 10,
            max_depth=a.depth or 5,
            learning_rate=0.3,
            max_bin=32,
            he=HEScheme(a.he),
            key_bits=a.bits,
        )
    veil: list[Any] = []
    if not a.skip_veil and a.mode in ("job", "both"):
        veil.append(lambda: run_veil_job(d, p))
    if not a.skip_veil and a.mode in ("threads", "both"):
        veil.append(lambda: run_veil(d, p))
    others: list[Any] = [lambda: run_xgboost(d, p)]
    want = {x for x in a.peers.split(",") if x}
    if want - {"sf", "fate"}:
        raise SystemExit(f"--peers takes sf and/or fate, not {sorted(want - {'sf', 'fate'})}")
    if want and a.case != "synth":
        raise SystemExit("the peers run the synth case only (--case synth)")
    if "sf" in want:
        need(Path(a.sf_venv) / "bin" / "python", "SecretFlow's venv", "see shared/peers/README.md")
        others.append(
            lambda: run_secretflow(
                peers,
                a.sf_venv,
                "synth20k",
                trees=p.n_trees,
                depth=p.max_depth,
                bits=a.bits,
                port=a.port,
            )
        )
    if "fate" in want:
        need(Path(a.fate_venv) / "bin" / "python", "FATE's venv", "see shared/peers/README.md")
        others.append(lambda: run_fate(peers, a.fate_venv, "synth20k", p.n_trees, p.max_depth))
    rows = []
    for i in range(a.repeat):
        for run in in_order(i, a.first, veil, others):
            rows.append({"round": i, **run()})
    shape = f"{d['xa'].shape[0]} x {d['xa'].shape[1] + d['xb'].shape[1]}"
    print(json.dumps({"case": a.case, "rows": shape, "results": rows}, indent=1))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
