"""The ``stats`` step through ``veil run`` (worker processes, mutual-TLS gRPC)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from veil.errors import ConfigError
from veil.jobs import RunOptions, load_job, run_job

pytest.importorskip("veil.net.certs", reason="needs veil.net.certs (gRPC branch)")
from tests.paths import DATA


def _job(folder: Path, step: dict[str, Any], rows: int = 3000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    g = pd.read_csv(DATA / "default_credit_hetero_guest.csv", nrows=rows)
    h = pd.read_csv(DATA / "default_credit_hetero_host.csv", nrows=rows)
    g.to_csv(folder / "bank.csv", index=False)
    h.to_csv(folder / "partner.csv", index=False)
    pd.DataFrame({"id": g["id"]}).to_csv(folder / "dealer.csv", index=False)
    job = {
        "name": "stats",
        "parties": {
            "bank": {"data": "bank.csv", "id": "id", "label": "y"},
            "partner": {"data": "partner.csv", "id": "id"},
            "dealer": {"data": "dealer.csv", "id": "id"},
        },
        "steps": [{"stats": step}],
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def test_stats_step_writes_what_each_party_may_learn(tmp_path: Path) -> None:
    step = {
        "dealer": "dealer",
        "reveal_to": {"bank": ["summary", "correlation", "vif"], "partner": ["vif"]},
    }
    out = tmp_path / "out"
    res = run_job(load_job(_job(tmp_path, step)), out, RunOptions(timeout=120))
    assert res.ok, res.error
    g = pd.read_csv(tmp_path / "bank.csv").drop(columns=["id", "y"])
    h = pd.read_csv(tmp_path / "partner.csv").drop(columns=["id"])
    X = np.hstack([g.to_numpy(), h.to_numpy()])
    R = np.corrcoef(X, rowvar=False)
    bank = json.loads((out / "bank" / "stats.json").read_text())
    np.testing.assert_allclose(np.array(bank["correlation"]["matrix"]), R, atol=1e-4)
    assert bank["correlation"]["columns"][13] == "partner.x0"
    vif = np.diag(np.linalg.inv(R))
    np.testing.assert_allclose(list(bank["vif"].values()), vif, atol=1e-3)
    assert bank["summary"]["partner"]["x3"]["mean"] == pytest.approx(h["x3"].mean())
    assert (out / "bank" / "correlation.png").read_bytes()[:4] == b"\x89PNG"
    partner = json.loads((out / "partner" / "stats.json").read_text())
    assert "correlation" not in partner and set(partner["summary"]) == {"partner"}
    np.testing.assert_allclose(list(partner["vif"].values()), vif, atol=1e-3)
    assert not (out / "partner" / "correlation.png").exists()
    assert not (out / "dealer" / "stats.json").exists()
    outs = res.report["steps"][0]["party_outputs"]
    assert outs["bank"]["learned"] == ["summary", "correlation", "vif"]


def test_stats_step_rejects_bad_parameters(tmp_path: Path) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"dealer": "dealer", "parties": ["bank", "dealer"], "reveal_to": ["bank"]}, "dealer"),
        ({"dealer": "dealer", "reveal_to": {"dealer": ["summary"]}}, "dealer"),
        ({"reveal_to": {"bank": ["vif"]}}, "correlation"),
        ({"reveal_to": {"bank": ["mean"]}}, "mean"),
        ({"dealer": "dealer"}, "reveal_to"),
        ({"reveal_to": ["bank"], "key_bits": 1024}, "key_bits"),
    ]
    for step, word in bad:
        with pytest.raises(ConfigError, match=word):
            load_job(_job(tmp_path, step, rows=50))
