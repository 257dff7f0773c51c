"""The credit steps end to end under ``veil run`` (one process per party, gRPC)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.ml import credit_fake_steps
from tests.ml.conftest import DATA
from veil.errors import ConfigError
from veil.jobs import RunOptions, load_job, run_job

ROOT = Path(__file__).resolve().parents[2]
ROWS = 1200


@pytest.fixture(autouse=True)
def step_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert credit_fake_steps.local_lr is not None
    monkeypatch.setenv("VEIL_STEP_MODULES", "tests.ml.credit_fake_steps")
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{path}" if path else str(ROOT))


def write_job(folder: Path, steps: list[object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.read_csv(DATA / "default_credit_hetero_guest.csv", nrows=ROWS).to_csv(
        folder / "bank.csv", index=False
    )
    pd.read_csv(DATA / "default_credit_hetero_host.csv", nrows=ROWS).to_csv(
        folder / "bureau.csv", index=False
    )
    job = {
        "name": "credit",
        "parties": {
            "bank": {"data": "bank.csv", "id": "id", "label": "y"},
            "bureau": {"data": "bureau.csv", "id": "id"},
        },
        "steps": steps,
    }
    (folder / "job.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    return folder / "job.yaml"


STEPS: list[object] = [
    {"split": {"test_size": 0.3, "seed": 7}},
    {"binning": {"method": "monotonic", "n_bins": 5, "min_bin_size": 60, "he": "ou",
                 "woe_transform": True, "reveal_names": ["bureau"]}},
    {"select": {"min_iv": 0.02, "top_k": 8}},
    "_local_lr",
    "evaluate",
    {"scorecard": {"base_score": 600, "pdo": 20, "base_odds": 50}},
]  # fmt: skip


@pytest.mark.timeout(600)
def test_split_binning_select_evaluate_scorecard(tmp_path: Path) -> None:
    spec = load_job(write_job(tmp_path / "job", STEPS))
    out = tmp_path / "out"
    res = run_job(spec, out, RunOptions(timeout=300))
    assert res.ok, res.error
    steps = {s["name"]: s for s in res.report["steps"]}
    assert steps["split"]["outputs"]["n_test"] == round(0.3 * ROWS)
    bank, bureau = out / "bank", out / "bureau"
    iv = pd.read_csv(bank / "iv.csv")
    assert len(iv) == 23 and set(iv["party"]) == {"bank", "bureau"}
    assert "x5" in set(iv.loc[iv["party"] == "bureau", "feature"])  # names revealed
    sel = pd.read_csv(bank / "selection.csv")
    assert sel["kept"].sum() <= 8 and (sel.loc[sel["kept"], "iv"] >= 0.02).all()
    # Each party's bins file holds its own features only.
    own = json.loads((bureau / "bins.json").read_text())["own"]
    assert {b["feature"] for b in own} == {f"x{i}" for i in range(10)}
    assert all(b["events"] is None for b in own)  # the partner never sees event counts
    for name in ("roc.png", "ks.png", "lift_gain.png", "iv.png", "report.html"):
        assert (bank / name).stat().st_size > 1000
    metrics = json.loads((bank / "metrics.json").read_text())
    assert 0.5 < metrics["sets"]["test"]["auc"] < 1.0
    # Joint scores equal the scaled log-odds of the model's predictions, row by row.
    pred = pd.read_csv(bank / "predictions.csv")
    scores = pd.read_csv(bank / "scores.csv")
    assert (scores["id"] == pred["id"]).all() and (scores["set"] == pred["set"]).all()
    p = pred["score"].to_numpy()
    want = 600 + 20 * np.log2((1 - p) / p / 50)
    np.testing.assert_allclose(scores["score"], want, atol=1e-6)
    assert (bureau / "scorecard.csv").exists() and not (bureau / "scores.csv").exists()


def test_bad_parameters_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"binning.*method"):
        load_job(write_job(tmp_path / "a", [{"binning": {"method": "best"}}]))
    with pytest.raises(ConfigError, match=r"split.*test_size"):
        load_job(write_job(tmp_path / "b", [{"split": {"test_size": 1.0}}]))
    with pytest.raises(ConfigError, match=r"select.*min_iv"):
        load_job(write_job(tmp_path / "c", [{"select": {"min_iv": "high"}}]))
