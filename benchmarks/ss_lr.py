"""Secret-sharing vertical LR (``veil.ml.ss_lr``) beside scikit-learn and SecretFlow's SS-LR.

    python benchmarks/ss_lr.py [--dataset synth20k|default_credit] [--triples dealer he]
        [--epochs 10] [--batch-size 0] [--lr 0.3] [--schedule constant] [--alpha 0.01]
        [--he ou [paillier]] [--key-bits 2048] [--repeats 1] [--peer-json results/sslr.json ...]
        [--secretflow /tmp/peers/secretflow] [--sf-venv /tmp/mpc-sf-venv] [--first veil|peer]

    python benchmarks/ss_lr.py --job-demo [--repeats 3]

(``benchmarks/vertical_lr.py --protocol ss`` runs this with the same flags.)
``--job-demo`` times the ``hetero_lr`` step through ``veil run`` (one process per party,
mutual-TLS gRPC, OU-2048 / DEFAULT_POLICY) on examples/credit_risk.yaml's data
(psi -> split -> hetero_lr -> evaluate, raw columns), ``protocol: he`` beside
``protocol: ss`` with a dealer and with no third party, in rotating order: the step's
wall time (report.json) and the CPU seconds of every process of the job (workers and
their HE pools) less those of the same job without the hetero_lr step.

``synth20k`` is the peers' synthetic split (``make_classification(20000, 30,
n_informative=15, n_redundant=5, random_state=0)``, 80/20 stratified, z-scored on the
training rows; guest x0..x9 + y, host x10..x29: shared/peers/fate/make_data.py),
rebuilt here the same way. The defaults match the SecretFlow harness
(``sf_vertical.py --algo sslr``: full batch, learning rate 0.3, 10 epochs, sigmoid t1,
L2 0.01). Each party (label holder, partner and, with ``--triples dealer``, the dealer)
runs in its own OS process joined by pipes (``benchmarks/_pipe_transport.py``). Prints
fit seconds (wall, all parties started together until the last returns), CPU seconds,
MB sent and test AUC for each triple source, scikit-learn fitted on the joined table
in the same run, and SecretFlow's SS-LR: run here with ``--secretflow`` (its harness
``run_pair.sh sslr`` on the same split, written to a temporary folder; each repeat
alternates whether Veil or SecretFlow runs first, ``--first`` picks round 0's) or read
from result JSON files (``--peer-json``). The triple generation's share of the fit time
is the ``offline`` column.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from veil.ml.lr import PartyData, PartyModel
from veil.ml.metrics import auc
from veil.ml.ss_lr import SSLROptions, run_dealer, train_label_holder, train_partner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import add_order_args, in_order
from _pipe_transport import run_processes
from vertical_lr import load_split, run_sklearn

ROLES = {"label_holder": "bank"}


def synth20k() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """The peers' synthetic split (their make_data.py, the same seeds)."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    X, y = make_classification(
        n_samples=20000, n_features=30, n_informative=15, n_redundant=5, random_state=0
    )
    ids = np.arange(len(y))
    tr, te = train_test_split(ids, test_size=0.2, random_state=42, stratify=y)
    Xs = np.round((X - X[tr].mean(0)) / (X[tr].std(0) + 1e-12), 6)
    g = pd.DataFrame(Xs[:, :10], columns=[f"x{i}" for i in range(10)])
    g.insert(0, "y", y.astype(int))
    g.insert(0, "id", ids)
    h = pd.DataFrame(Xs[:, 10:], columns=[f"x{i}" for i in range(10, 30)])
    h.insert(0, "id", ids)
    return g, h, np.sort(tr), np.sort(te)


def write_peer_data(folder: Path) -> None:
    """The synth20k train/test CSVs as the peers' make_data.py writes them."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    X, y = make_classification(
        n_samples=20000, n_features=30, n_informative=15, n_redundant=5, random_state=0
    )
    ids = np.arange(len(y))
    tr, te = train_test_split(ids, test_size=0.2, random_state=42, stratify=y)
    Xs = (X - X[tr].mean(0)) / (X[tr].std(0) + 1e-12)
    for split, rows in (("train", tr), ("test", te)):
        g = pd.DataFrame(Xs[rows, :10], columns=[f"x{i}" for i in range(10)])
        g.insert(0, "y", y[rows].astype(int))
        g.insert(0, "id", rows)
        h = pd.DataFrame(Xs[rows, 10:], columns=[f"x{i}" for i in range(20)])
        h.insert(0, "id", rows)
        g.to_csv(folder / f"synth20k_{split}_guest.csv", index=False, float_format="%.6f")
        h.to_csv(folder / f"synth20k_{split}_host.csv", index=False, float_format="%.6f")


def run_secretflow(harness: Path, venv: Path, data: Path, a: argparse.Namespace) -> dict[str, Any]:
    """One SecretFlow SS-LR (SEMI2K) fit through its harness; its result JSON."""
    tag = f"sslr_veilbench_{os.getpid()}"
    cmd = [str(harness / "run_pair.sh"), tag, "--algo", "sslr", "--dataset", "synth20k"]
    cmd += ["--epochs", str(a.epochs), "--lr", str(a.lr), "--batch", str(a.batch_size)]
    env = {**os.environ, "VENV": str(venv), "PEER_DATA": str(data)}
    subprocess.run(cmd, env=env, check=True, timeout=900, capture_output=True)
    out = harness / "results" / f"{tag}.json"
    r: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return r


def job_demo(repeats: int, only: list[str] | None = None) -> None:
    """``--job-demo``: hetero_lr's wall and CPU time per protocol in a job (``only``: the
    variants whose names start with one of these, beside the psi + split baseline)."""
    import resource

    import yaml

    from veil.jobs import RunOptions, load_job, run_job

    examples = Path(__file__).resolve().parents[1] / "examples" / "data"
    train = {"epochs": 10, "learning_rate": 0.5, "seed": 1}
    variants: dict[str, dict[str, Any] | None] = {
        "he": {**train, "protocol": "he", "he": "ou", "key_bits": 2048},
        "ss, dealer": {**train, "protocol": "ss", "dealer": "dealer"},
        "ss, no third party (ou)": {**train, "protocol": "ss", "he": "ou", "key_bits": 2048},
        "ss, no third party (paillier)": {
            **train,
            "protocol": "ss",
            "he": "paillier",
            "key_bits": 2048,
        },
        "(psi + split only)": None,
    }
    if only:
        variants = {
            k: v for k, v in variants.items() if v is None or any(k.startswith(o) for o in only)
        }
    results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            names = list(variants)
            names = names[i % len(names) :] + names[: i % len(names)]
            for name in names:
                params = variants[name]
                parties: dict[str, Any] = {
                    "bank": {"data": str(examples / "psi_bank.csv"), "id": "id", "label": "y"},
                    "partner": {"data": str(examples / "psi_partner.csv"), "id": "id"},
                }
                steps: list[Any] = [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 42}}]
                if params is not None:
                    steps += [{"hetero_lr": params}, "evaluate"]
                    if "dealer" in params:
                        parties["dealer"] = {"id": "id"}
                job = Path(tmp) / "job.yaml"
                job.write_text(yaml.safe_dump({"name": "t", "parties": parties, "steps": steps}))
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                res = run_job(
                    load_job(job), Path(tmp) / f"out{i}{len(name)}", RunOptions(timeout=1800)
                )
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if not res.ok:
                    raise RuntimeError(f"{name}: {res.error}")
                cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                wall = float(res.report["steps"][2]["seconds"]) if params is not None else 0.0
                auc_test = float("nan")
                if params is not None:
                    auc_test = float(res.report["steps"][3]["party_outputs"]["bank"]["auc_test"])
                    print(f"{name}: step {wall:.1f} s, job CPU {cpu:.1f} s, test AUC {auc_test}")
                results[name].append((wall, cpu, auc_test))
    base = float(np.median([c for _, c, _ in results.pop("(psi + split only)")]))
    print(f"hetero_lr on examples/credit_risk.yaml's data, median of {repeats}")
    print("| protocol | step wall s (runs) | CPU s (all processes, less psi+split) | test AUC |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        wall = float(np.median([w for w, _, _ in runs]))
        each = ", ".join(f"{w:.1f}" for w, _, _ in runs)
        cpu = float(np.median([c for _, c, _ in runs])) - base
        print(f"| {name} | {wall:.1f} ({each}) | {cpu:.1f} | {runs[0][2]:.4f} |")


def _role(fn: Any, data: PartyData | None, o: SSLROptions) -> Any:
    def role(s: Any) -> dict[str, Any]:
        if data is None:
            run_dealer(s, o)
            return {}
        model, report = fn(s, data, o)
        return {
            "model": model.to_json(),
            "offline_s": report.offline_seconds,
            "epoch_s": report.seconds,
            "method": report.method,
        }

    return role


def run_veil(
    g: pd.DataFrame, h: pd.DataFrame, tr: np.ndarray, te: np.ndarray, o: SSLROptions
) -> dict[str, Any]:
    lh, pt = PartyData.from_frame(g, label="y"), PartyData.from_frame(h)
    targets = {
        "bank": _role(train_label_holder, lh.take(tr), o),
        "bureau": _role(train_partner, pt.take(tr), o),
    }
    if o.dealer:
        targets[o.dealer] = _role(None, None, o)
    t0 = time.perf_counter()
    out = run_processes(targets, roles=ROLES)
    fit = time.perf_counter() - t0
    for p, r in out.items():
        if r.get("error"):
            raise RuntimeError(f"{p}: {r['error']}")
    models = [PartyModel.from_json(out[p]["result"]["model"]) for p in ("bank", "bureau")]
    scores = models[0].partial_score(lh.X[te]) + models[1].partial_score(pt.X[te])
    assert lh.y is not None
    return {
        "fit_s": fit,
        "offline_s": out["bank"]["result"]["offline_s"],
        "cpu_s": sum(r["cpu_s"] for r in out.values()),
        "mb": sum(r["bytes_sent"] for r in out.values()) / 1e6,
        "test_auc": auc(lh.y[te], scores),
        "method": out["bank"]["result"]["method"],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="synth20k", choices=["synth20k", "default_credit"])
    ap.add_argument("--triples", nargs="+", default=["dealer", "he"], choices=["dealer", "he"])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=0)
    ap.add_argument("--lr", type=float, default=0.3)
    ap.add_argument("--schedule", default="constant", choices=["constant", "decay"])
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--sigmoid", default="linear")
    ap.add_argument("--he", nargs="+", default=["ou"], choices=["ou", "paillier"])
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--peer-json", nargs="*", default=[])
    ap.add_argument("--secretflow", help="SecretFlow harness folder (run_pair.sh) to run here")
    ap.add_argument("--sf-venv", default="/tmp/mpc-sf-venv", help="SecretFlow's venv")
    ap.add_argument("--job-demo", action="store_true", help="time hetero_lr in veil run jobs")
    ap.add_argument("--only", nargs="*", help="--job-demo: only the variants named so")
    add_order_args(ap)
    a = ap.parse_args(argv)
    if a.job_demo:
        job_demo(a.repeats, a.only)
        return
    g, h, tr, te = synth20k() if a.dataset == "synth20k" else load_split()
    sk = run_sklearn(g, h, tr, te)
    common = {
        "epochs": a.epochs,
        "batch_size": a.batch_size,
        "learning_rate": a.lr,
        "schedule": a.schedule,
        "alpha": a.alpha,
        "sigmoid": a.sigmoid,
        "key_bits": a.key_bits,
        "seed": 1,
    }
    modes = [m for t in a.triples for m in (["dealer"] if t == "dealer" else a.he)]
    raw: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    sf: list[dict[str, Any]] = []
    tmp = tempfile.TemporaryDirectory()
    if a.secretflow:
        write_peer_data(Path(tmp.name))

    def veil_run(mode: str) -> Any:
        dealer = mode == "dealer"
        o = SSLROptions(dealer="dealer" if dealer else None, he="ou" if dealer else mode, **common)
        return lambda: raw[mode].append(run_veil(g, h, tr, te, o))

    peer = [
        lambda: sf.append(run_secretflow(Path(a.secretflow), Path(a.sf_venv), Path(tmp.name), a))
    ]
    for i in range(a.repeats):
        for run in in_order(i, a.first, [veil_run(m) for m in modes], peer if a.secretflow else []):
            run()
    tmp.cleanup()
    rows = {
        m: {k: float(np.median([r[k] for r in runs])) for k in runs[0] if k != "method"}
        for m, runs in raw.items()
    }
    n_feat = g.shape[1] - 2 + h.shape[1] - 1
    print(
        f"{a.dataset}: rows train/test {len(tr)}/{len(te)}, features {n_feat}, "
        f"{a.epochs} epochs, batch {a.batch_size or 'full'}, lr {a.lr} ({a.schedule}), "
        f"L2 {a.alpha}, sigmoid {a.sigmoid}, median of {a.repeats}"
    )
    print("| system | fit s | offline (triples) s | CPU s (all parties) | MB sent | test AUC |")
    print("|---|---|---|---|---|---|")
    names = {"dealer": "Veil SS-LR, dealer"}
    names.update({he: f"Veil SS-LR, no third party ({he}-{a.key_bits})" for he in a.he})
    for mode, r in rows.items():
        share = 100 * r["offline_s"] / r["fit_s"]
        print(
            f"| {names[mode]} | {r['fit_s']:.2f} | {r['offline_s']:.2f} ({share:.0f} %) | "
            f"{r['cpu_s']:.1f} | {r['mb']:.1f} | {r['test_auc']:.4f} |"
        )
    if sf:
        med = float(np.median([r["fit_seconds"] for r in sf]))
        print(
            f"| SecretFlow SS-LR (SEMI2K/FM64), in this run | {med:.2f} | | | | "
            f"{sf[0]['test_auc']:.4f} |"
        )
    print(f"| scikit-learn (joined, plaintext) | {sk['fit_s']:.2f} | | | | {sk['test_auc']:.4f} |")
    for path in a.peer_json:
        r = json.loads(Path(path).read_text())
        name = f"{r.get('framework', path)} {r.get('spu', '')}"
        print(f"| {name} | {r['fit_seconds']:.2f} | | | | {r['test_auc']:.4f} |")
    print(json.dumps({"veil": raw, "sklearn": sk, "secretflow": sf}))


if __name__ == "__main__":
    main()
