"""Vertical LR on default_credit: Veil (HE, 2 parties) beside scikit-learn and peers.

    python benchmarks/vertical_lr.py [--he ou|paillier] [--key-bits 2048] [--epochs 10]
        [--feature-bits 8] [--protocol auto|gram|he] [--peer-json results/fate_lr.json ...]
    python benchmarks/vertical_lr.py --protocol ss [benchmarks/ss_lr.py's flags]

``--protocol ss`` runs secret-sharing LR (``benchmarks/ss_lr.py``: the 16k x 30 synthetic
split, dealer and no-third-party triples, SecretFlow SS-LR side by side).

Splits the aligned rows 70/30 (stratified, seed 42), trains Veil's ``hetero_lr`` with
the label holder and partner as two OS processes joined by pipes (``--workers N``: HE
worker processes per party; default the engine's, all cores per party; ``--workers 1``
gives each party one core of a two-core machine and no worker traffic), scores the
test rows jointly, and prints wall time, seconds per epoch, CPU seconds (each party with
its HE worker processes), bytes on the wire and test AUC, beside scikit-learn's
LogisticRegression fitted on the joined table in the same run. ``--peer-json`` adds
rows from the FATE / SecretFlow harness outputs (``results/out.json``) fed by
``benchmarks/lr_peer_data.py``. With ``--repeats N`` Veil and scikit-learn each run N
times, in the opposite order to the round before (``--first`` picks round 0's).

Data: ``--data`` (default ../shared/data beside the repository, or $VEIL_SHARED/data).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from veil.crypto.he import set_workers
from veil.ml.lr import (
    LROptions,
    PartyData,
    PartyModel,
    predict_label_holder,
    predict_partner,
    resolve_protocol,
    train_label_holder,
    train_partner,
)
from veil.ml.metrics import auc
from veil.net.local import run_parties

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import add_order_args, data_dir, in_order
from _pipe_transport import run_processes

ROLES = {"label_holder": "bank"}


def load_split(
    data: str | Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Both parties' tables and the 70/30 stratified split (seed 42) of the rows."""
    from sklearn.model_selection import train_test_split

    d = data_dir(data)
    g = pd.read_csv(d / "default_credit_hetero_guest.csv")
    h = pd.read_csv(d / "default_credit_hetero_host.csv")
    assert (g["id"].to_numpy() == h["id"].to_numpy()).all()
    rows = np.arange(len(g))
    tr, te = train_test_split(rows, test_size=0.3, random_state=42, stratify=g["y"])
    return g, h, np.sort(tr), np.sort(te)


def run_sklearn(g: pd.DataFrame, h: pd.DataFrame, tr: np.ndarray, te: np.ndarray) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    X = np.hstack([g.drop(columns=["id", "y"]).to_numpy(), h.drop(columns=["id"]).to_numpy()])
    y = g["y"].to_numpy()
    t0 = time.perf_counter()
    m = LogisticRegression(max_iter=1000).fit(X[tr], y[tr])
    fit = time.perf_counter() - t0
    return {"fit_s": fit, "test_auc": auc(y[te], m.decision_function(X[te]))}


def _train_json(fn: Any, data: PartyData, o: LROptions, workers: int | None) -> Any:
    def role(s: Any) -> dict[str, Any]:
        if workers is not None:
            set_workers(workers)  # in this party's own process
        model, report = fn(s, data, o)
        return {"model": model.to_json(), "seconds": report.seconds, "epochs": report.epochs_run}

    return role


def run_veil(
    g: pd.DataFrame,
    h: pd.DataFrame,
    tr: np.ndarray,
    te: np.ndarray,
    o: LROptions,
    *,
    workers: int | None,
) -> dict[str, Any]:
    """Train with each party in its own process (two cores), then score the test rows."""
    lh = PartyData.from_frame(g, label="y")
    pt = PartyData.from_frame(h)
    t0 = time.perf_counter()
    out = run_processes(
        {
            "bank": _train_json(train_label_holder, lh.take(tr), o, workers),
            "bureau": _train_json(train_partner, pt.take(tr), o, workers),
        },
        roles=ROLES,
    )
    fit = time.perf_counter() - t0
    models = {p: PartyModel.from_json(r["result"]["model"]) for p, r in out.items()}
    t1 = time.perf_counter()
    scores = run_parties(
        {
            "bank": lambda s: predict_label_holder(s, lh.take(te), models["bank"]),
            "bureau": lambda s: predict_partner(s, pt.take(te), models["bureau"]),
        },
        roles=ROLES,
    )["bank"]
    pred = time.perf_counter() - t1
    assert lh.y is not None
    return {
        "fit_s": fit,
        "s_per_epoch": float(np.median(out["bank"]["result"]["seconds"])),
        "cpu_s_bank": out["bank"]["cpu_s"],
        "cpu_s_bureau": out["bureau"]["cpu_s"],
        "train_mb": (out["bank"]["bytes_sent"] + out["bureau"]["bytes_sent"]) / 1e6,
        "predict_s": pred,
        "test_auc": auc(lh.y[te], scores),
        "epochs": out["bank"]["result"]["epochs"],
    }


def main() -> None:
    argv = sys.argv[1:]
    if "--protocol" in argv and argv[argv.index("--protocol") + 1 :][:1] == ["ss"]:
        import ss_lr

        i = argv.index("--protocol")
        ss_lr.main(argv[:i] + argv[i + 2 :])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--he", default="ou", choices=["ou", "paillier"])
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=LROptions().batch_size)
    ap.add_argument("--feature-bits", type=int, default=LROptions().feature_bits)
    ap.add_argument("--protocol", default="auto", choices=["auto", "gram", "he"])
    ap.add_argument("--workers", type=int, default=None, help="HE worker processes per party")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--peer-json", nargs="*", default=[])
    ap.add_argument("--data", help="folder of default_credit_hetero_*.csv (default shared/data)")
    add_order_args(ap)
    a = ap.parse_args()
    g, h, tr, te = load_split(a.data)
    o = LROptions(
        scheme=a.he,
        key_bits=a.key_bits,
        epochs=a.epochs,
        batch_size=a.batch_size,
        feature_bits=a.feature_bits,
        protocol=a.protocol,
    )
    runs: list[dict[str, Any]] = []
    sks: list[dict[str, Any]] = []
    for i in range(a.repeats):
        for run in in_order(
            i,
            a.first,
            [lambda: runs.append(run_veil(g, h, tr, te, o, workers=a.workers))],
            [lambda: sks.append(run_sklearn(g, h, tr, te))],
        ):
            run()
    sk = {**sks[0], "fit_s": float(np.median([r["fit_s"] for r in sks]))}
    veil = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    print(
        f"rows train/test {len(tr)}/{len(te)}, features 13+10, {a.he}-{a.key_bits}, "
        f"protocol {resolve_protocol(o, 1)}, "
        f"{a.epochs} epochs, batch {a.batch_size}, feature bits {a.feature_bits}, "
        f"HE workers per party {a.workers or 'all cores'}, median of {a.repeats}"
    )
    print("| system | fit s | s/epoch | CPU s (bank+bureau) | MB on wire | test AUC | vs Veil |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| Veil hetero_lr | {veil['fit_s']:.1f} | {veil['s_per_epoch']:.2f} | "
        f"{veil['cpu_s_bank']:.0f}+{veil['cpu_s_bureau']:.0f} | {veil['train_mb']:.1f} | "
        f"{veil['test_auc']:.4f} | 1.0x |"
    )
    print(
        f"| scikit-learn (joined, plaintext) | {sk['fit_s']:.2f} | | | | "
        f"{sk['test_auc']:.4f} | {sk['fit_s'] / veil['fit_s']:.3f}x |"
    )
    for path in a.peer_json:
        r = json.loads(Path(path).read_text())
        print(
            f"| {r.get('algo', path)} ({r.get('he', '')}-{r.get('key_length', '')}) | "
            f"{r['fit_seconds']:.1f} | | | | {r['test_auc']:.4f} | "
            f"{r['fit_seconds'] / veil['fit_s']:.1f}x |"
        )
    print("AUC gap to scikit-learn:", f"{veil['test_auc'] - sk['test_auc']:+.4f}")
    print(json.dumps({"veil": runs, "sklearn": sk, "sklearn_runs": sks}))


if __name__ == "__main__":
    main()
