"""Evaluation report on the label holder: PNG plots and one self-contained HTML file.

Plots (ROC, KS curve, lift/gain, IV bar chart) are drawn with matplotlib's Agg
canvas inside :func:`write_report` (no global backend switch, no import side
effects), written as PNG files and embedded base64 in ``report.html``. Every
file is written atomically (temporary file + rename) into the output folder.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from veil.fileio import write_atomic
from veil.ml import metrics
from veil.ml.metrics import Evaluation


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half."""
    write_atomic(path, data)


def _png(draw: Any, size: tuple[float, float] = (5.5, 4.5)) -> bytes:
    from io import BytesIO

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="tight")
    FigureCanvasAgg(fig)
    draw(fig)
    buf = BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


Scored = tuple[npt.ArrayLike, npt.ArrayLike]


def _roc(sets: Mapping[str, Scored]) -> bytes:
    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        for name, (y, s) in sets.items():
            fpr, tpr, _ = metrics.roc_curve(y, s)
            ax.plot(fpr, tpr, label=f"{name} (AUC {metrics.auc(y, s):.3f})")
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
        ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC")
        ax.legend(loc="lower right")

    return _png(draw)


def _ks(y: npt.ArrayLike, s: npt.ArrayLike, name: str) -> bytes:
    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        fpr, tpr, _ = metrics.roc_curve(y, s)
        pos = float(np.mean(np.asarray(y, dtype=np.float64)))
        share = pos * tpr + (1 - pos) * fpr  # population share above each threshold
        ks_i = int(np.argmax(tpr - fpr))
        ax.plot(share, tpr, label="events (cum. share)")
        ax.plot(share, fpr, label="non-events (cum. share)")
        ks_label = f"KS {tpr[ks_i] - fpr[ks_i]:.3f}"
        ax.vlines(share[ks_i], fpr[ks_i], tpr[ks_i], colors="red", label=ks_label)
        ax.set(
            xlabel="Share of population (highest scores first)",
            ylabel="Cumulative share",
            title=f"KS curve ({name})",
        )
        ax.legend(loc="lower right")

    return _png(draw)


def _lift(rows: Sequence[metrics.DecileRow], name: str) -> bytes:
    def draw(fig: Any) -> None:
        ax1, ax2 = fig.subplots(1, 2)
        d = [r.decile for r in rows]
        ax1.bar(d, [r.lift for r in rows], color="tab:blue")
        ax1.axhline(1.0, c="grey", ls="--", lw=0.8)
        ax1.set(xlabel="Decile (1 = riskiest)", ylabel="Lift", title=f"Lift ({name})")
        ax2.plot([0, *d], [0, *[r.cum_gain for r in rows]], marker="o", label="model")
        ax2.plot([0, 10], [0, 1], ls="--", c="grey", label="random")
        ax2.set(xlabel="Decile", ylabel="Cumulative gain", title=f"Gain ({name})")
        ax2.legend(loc="lower right")

    return _png(draw, (9.0, 4.0))


def _iv_chart(iv: Sequence[tuple[str, float]]) -> bytes:
    ranked = sorted(iv, key=lambda t: t[1])

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        ax.barh([n for n, _ in ranked], [v for _, v in ranked], color="tab:green")
        ax.axvline(0.02, c="grey", ls="--", lw=0.8)
        ax.set(xlabel="Information value", title="IV by feature")

    return _png(draw, (6.0, max(3.0, 0.28 * len(ranked) + 1.2)))


def _table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r.values()) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def write_report(
    out_dir: str | os.PathLike[str],
    sets: Mapping[str, Scored],
    *,
    iv: Sequence[tuple[str, float]] = (),
    threshold: float = 0.5,
    title: str = "Credit model evaluation",
) -> dict[str, Evaluation]:
    """Evaluate every scored set (e.g. ``{"train": (y, p), "test": (y, p)}``), write
    ``roc.png``, ``ks.png``, ``lift_gain.png``, ``iv.png`` (if ``iv``),
    ``metrics.json`` and ``report.html`` into ``out_dir``; return the metrics."""
    out = Path(out_dir)
    evals = {name: metrics.evaluate(y, s, threshold) for name, (y, s) in sets.items()}
    main = "test" if "test" in sets else next(iter(sets))
    images = {
        "roc.png": _roc(sets),
        "ks.png": _ks(*sets[main], main),
        "lift_gain.png": _lift(evals[main].deciles, main),
    }
    if iv:
        images["iv.png"] = _iv_chart(iv)
    stability = None
    if "train" in sets and "test" in sets:
        stability = metrics.psi(sets["train"][1], sets["test"][1])
    summary = {
        "sets": {k: asdict(v) for k, v in evals.items()},
        "psi_train_test": stability,
        "iv": dict(iv),
    }
    for name, data in images.items():
        atomic_write(out / name, data)
    atomic_write(out / "metrics.json", json.dumps(summary, indent=2).encode())
    rows = [
        {
            "set": k,
            "rows": e.n,
            "AUC": e.auc,
            "KS": e.ks,
            "confusion [[tn, fp], [fn, tp]]": e.confusion,
        }
        for k, e in evals.items()
    ]
    parts = [f"<h1>{html.escape(title)}</h1>", _table(rows)]
    if stability is not None:
        parts.append(f"<p>Population stability index, train vs test scores: {stability:.4f}</p>")
    parts.append(f"<h2>Deciles ({main})</h2>" + _table([asdict(r) for r in evals[main].deciles]))
    for name, data in images.items():
        b64 = base64.b64encode(data).decode()
        parts.append(f'<img alt="{name}" src="data:image/png;base64,{b64}">')
    if iv:
        parts.append(
            "<h2>Information value</h2>"
            + _table([{"feature": n, "IV": v} for n, v in sorted(iv, key=lambda t: -t[1])])
        )
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:2px 8px;text-align:right}img{max-width:100%;display:block;margin:1em 0}"
    )
    doc = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )
    atomic_write(out / "report.html", doc.encode())
    return evals
