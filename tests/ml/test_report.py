from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from veil.ml.report import write_report


def test_report_files_and_html_is_self_contained(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(600) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(size=600) + 1.2 * y - 1)))
    sets = {"train": (y[:400], p[:400]), "test": (y[400:], p[400:])}
    evals = write_report(tmp_path, sets, iv=[("bank:x0", 0.3), ("bureau:f1", 0.05)])
    for name in ("roc.png", "ks.png", "lift_gain.png", "iv.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    doc = (tmp_path / "report.html").read_text()
    assert doc.count("data:image/png;base64,") == 4 and 'src="http' not in doc
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["sets"]["test"]["auc"] == pytest.approx(evals["test"].auc)
    assert m["psi_train_test"] is not None
    assert not list(tmp_path.glob(".*.tmp"))
