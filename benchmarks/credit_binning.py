"""Federated binning + WOE/IV on default_credit (30,000 rows, 13 + 10 features).

Veil: the label holder and the partner run ``veil.ml.fed_binning`` in two threads over
the in-memory transport (bytes counted by a tap on every frame), 2048-bit keys, key
generation included. Baseline in the same run: the same binning in plaintext on the
joined table (what a single owner of all data would do). Optional peer: FATE 2.2's
hetero feature binning (quantile, Paillier) via ``fate_binning_launcher.py`` in FATE's
venv; its fit time excludes FATE's start-up. Results are printed as JSON lines.
Each round runs Veil and the baselines, in the opposite order to the round before.

    python benchmarks/credit_binning.py --repeat 3 [--he paillier|ou] [--method quantile]
    python benchmarks/credit_binning.py --method equal_width --fate 1 [--fate-venv DIR]

Data: ``--data`` (default ``../shared/data`` beside the repository, or $VEIL_SHARED/data).
FATE's venv: ``--fate-venv`` (default /tmp/fate-venv, as shared/peers/README.md builds it).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
from _bench import FATE_VENV, add_order_args, data_dir, in_order, peer_python

from veil.ml import fed_binning
from veil.ml.binning import BinMethod, BinningOptions, bin_feature, regroup, woe_iv
from veil.ml.fed_binning import FedBinningOptions
from veil.net.local import run_parties

HERE = Path(__file__).resolve()


def load(data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    g = pd.read_csv(data / "default_credit_hetero_guest.csv")
    h = pd.read_csv(data / "default_credit_hetero_host.csv")
    return g, h


def cpu() -> float:
    """CPU seconds of this process and its live children (the HE engine's worker pool)."""
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + r.ru_utime + r.ru_stime


def veil_once(g: pd.DataFrame, h: pd.DataFrame, opts: FedBinningOptions) -> dict[str, Any]:
    sent = [0]

    def tap(src: int, dst: int, key: str, payload: bytes) -> None:
        sent[0] += len(payload)

    gx = {c: g[c].to_numpy() for c in g.columns if c.startswith("x")}
    hx = {c: h[c].to_numpy() for c in h.columns if c.startswith("x")}
    c0, t0 = cpu(), time.perf_counter()
    out = run_parties(
        {
            "bank": lambda s: fed_binning.run_label_holder(s, g["y"].to_numpy(), gx, opts),
            "bureau": lambda s: fed_binning.run_partner(s, hx, opts.binning),
        },
        roles={"label_holder": "bank"},
        tap=tap,
        timeout=600,
    )
    wall, cpu_s = time.perf_counter() - t0, cpu() - c0
    ivs = {b.key: b.iv for b in out["bank"].stats}
    # Plaintext IV of the partner's final bins with the true labels, from scratch.
    y = g["y"].to_numpy()
    worst = 0.0
    for st in out["bank"].stats:
        if st.party == "bureau":
            # the partner holds its label-free bins; the label holder the merge plan
            b = regroup(out["bureau"][list(hx)[st.index]], st.starts)
            idx = b.transform(hx[b.name])
            ev = np.bincount(idx, weights=y, minlength=len(b.counts))
            worst = max(worst, abs(woe_iv(ev, b.counts)[1] - st.iv))
    return {"wall_s": wall, "cpu_s": cpu_s, "bytes": sent[0], "iv": ivs, "max_iv_diff": worst}


def plain_once(g: pd.DataFrame, h: pd.DataFrame, opts: BinningOptions) -> dict[str, Any]:
    joined = pd.concat([g, h.drop(columns="id").add_prefix("h_")], axis=1)
    y = joined["y"].to_numpy()
    c0, t0 = cpu(), time.perf_counter()
    ivs = {
        c: bin_feature(c, joined[c].to_numpy(), y, opts).iv
        for c in joined.columns
        if c not in ("id", "y")
    }
    return {"wall_s": time.perf_counter() - t0, "cpu_s": cpu() - c0, "iv": ivs}


def fate_once(python: Path, data: Path, n_bins: int, key_length: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out.json"
        cmd = [
            str(python),
            str(HERE.parent / "fate_binning_launcher.py"),
            "--csv_dir", str(data),
            "--parties", "guest:19999", "host:20000",
            "--log_level", "WARNING",
            "--data_dir", str(Path(d) / "fate_data"),
            "--n_bins", str(n_bins),
            "--key_length", str(key_length),
            "--out", str(out),
        ]  # fmt: skip
        t0 = time.perf_counter()
        log_path = Path(d) / "fate.log"
        with log_path.open("w") as log_f:
            proc = subprocess.Popen(cmd, cwd=d, stdout=log_f, stderr=subprocess.STDOUT)
            cpu_seen: dict[int, float] = {}  # pid -> last CPU seconds (polled: a lower bound)
            root = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    tree = []
                for p in tree:
                    try:
                        t = p.cpu_times()
                        cpu_seen[p.pid] = t.user + t.system
                    except psutil.NoSuchProcess:
                        pass
                time.sleep(0.5)
        log = log_path.read_text()
        if not out.exists():
            raise RuntimeError(f"FATE binning failed:\n{log[-3000:]}")
        res: dict[str, Any] = json.loads(out.read_text())
        res["process_s"] = time.perf_counter() - t0
        res["process_cpu_s"] = sum(cpu_seen.values())
        return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--he", default="paillier", choices=["paillier", "ou"])
    ap.add_argument("--method", default="quantile", choices=[m.value for m in BinMethod])
    ap.add_argument("--n-bins", type=int, default=10)
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument(
        "--fate",
        type=int,
        default=0,
        metavar="N",
        help="also run FATE 2.2 hetero binning N times (equal_width = its 'bucket')",
    )
    ap.add_argument("--data", help="folder of default_credit_hetero_*.csv (default: shared/data)")
    ap.add_argument("--fate-venv", default=FATE_VENV, help=f"FATE 2.2's venv (default {FATE_VENV})")
    add_order_args(ap)
    a = ap.parse_args()
    if a.fate and a.method != "equal_width":
        raise SystemExit("--fate compares equal_width binning (FATE's quantile fails here)")
    data = data_dir(a.data)
    fate_py = peer_python(a.fate_venv, "FATE") if a.fate else None
    g, h = load(data)
    bopts = BinningOptions(BinMethod(a.method), n_bins=a.n_bins, min_bin_size=50)
    opts = FedBinningOptions(bopts, he=a.he, key_bits=a.key_bits)
    veil: list[dict[str, Any]] = []
    plain: list[dict[str, Any]] = []
    fate: list[dict[str, Any]] = []
    for i in range(max(a.repeat, a.fate)):
        mine = [lambda: veil.append(veil_once(g, h, opts))] if i < a.repeat else []
        others = [lambda: plain.append(plain_once(g, h, bopts))] if i < a.repeat else []
        if fate_py is not None and i < a.fate:
            others.append(lambda: fate.append(fate_once(fate_py, data, a.n_bins, a.key_bits)))
        for run in in_order(i, a.first, mine, others):
            run()
    med = statistics.median
    row: dict[str, Any] = {
        "bench": "credit_binning",
        "rows": len(g),
        "features": len(g.columns) - 2 + len(h.columns) - 1,
        "method": a.method,
        "he": a.he,
        "key_bits": a.key_bits,
        "repeat": a.repeat,
        "veil_wall_s": round(med(r["wall_s"] for r in veil), 2),
        "veil_cpu_s": round(med(r["cpu_s"] for r in veil), 2),
        "veil_bytes": veil[0]["bytes"],
        "veil_max_iv_diff_vs_plain": max(r["max_iv_diff"] for r in veil),
        "plain_wall_s": round(med(r["wall_s"] for r in plain), 3),
        "veil_over_plain": round(
            med(r["wall_s"] for r in veil) / med(r["wall_s"] for r in plain), 1
        ),
        "top_iv": sorted(veil[0]["iv"].items(), key=lambda t: -t[1])[:5],
    }
    if fate:
        row["fate_fit_s"] = round(med(r["fit_seconds"] for r in fate), 2)
        row["fate_over_veil"] = round(row["fate_fit_s"] / row["veil_wall_s"], 1)
        # CPU of FATE's whole process tree, start-up (~12 s import) and exit included.
        row["fate_process_cpu_s"] = round(med(r["process_cpu_s"] for r in fate), 1)
        row["fate_process_s"] = round(med(r["process_s"] for r in fate), 1)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
