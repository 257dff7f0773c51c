"""The secureboost and predict steps through ``veil run`` (worker processes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.ml.sbt_data import DATA
from veil.errors import ConfigError
from veil.jobs import RunOptions, load_job, run_job

pytest.importorskip("veil.net.certs", reason="needs veil.net.certs (gRPC branch)")


def _tables(folder: Path, n: int = 150) -> None:
    g = pd.read_csv(DATA / "breast_hetero_guest.csv")[:n]
    h = pd.read_csv(DATA / "breast_hetero_host.csv").set_index("id").loc[g["id"]].reset_index()
    h = h.sample(frac=1.0, random_state=0)  # row order differs: PSI aligns it
    g.to_csv(folder / "bank.csv", index=False)
    h.to_csv(folder / "partner.csv", index=False)


def _job(folder: Path, steps: list[object]) -> Path:
    job = {
        "name": "sbt",
        "parties": {
            "bank": {"data": "bank.csv", "id": "id", "label": "y"},
            "partner": {"data": "partner.csv", "id": "id"},
        },
        "steps": steps,
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


@pytest.mark.slow  # three worker processes, 2048-bit OU keys: ~1 min on a loaded machine
def test_secureboost_step_trains_predicts_and_writes_per_party_files(tmp_path: Path) -> None:
    pytest.importorskip("veil.protocols.psi", reason="needs veil.protocols.psi")
    _tables(tmp_path)
    # an explicit seed: a derived one changes with every default of the job's steps (the
    # psi step's default protocol, for one), and with it which party's splits win
    sbt = {"n_trees": 3, "max_depth": 2, "max_bin": 8, "seed": 1}
    job = _job(tmp_path, [{"psi": {}}, {"secureboost": sbt}, {"predict": {}}])
    out = tmp_path / "out"
    res = run_job(load_job(job), out, RunOptions(timeout=120))
    assert res.ok, res.error
    step = res.report["steps"][1]
    assert step["party_outputs"]["bank"]["trees"] == 3
    assert step["party_outputs"]["bank"]["auc_train"] > 0.9
    pred = pd.read_csv(out / "bank" / "predictions.csv")
    assert set(pred["set"]) == {"train", "test"} and len(pred) == 150
    assert res.report["steps"][2]["party_outputs"]["bank"]["rows_scored"] == 150
    mean = res.report["steps"][2]["party_outputs"]["bank"]["mean_score"]
    np.testing.assert_allclose(mean, pred["score"].mean(), atol=1e-6)
    bank_imp = json.loads((out / "bank" / "importance.json").read_text())
    partner_imp = json.loads((out / "partner" / "importance.json").read_text())
    assert set(partner_imp) == {f"x{i}" for i in range(20)}  # the partner's own columns
    # the bank sees the partner's splits only as one "<partner>" entry, with their count
    partner_splits = sum(v["split"] for v in partner_imp.values())
    assert partner_splits > 0 and bank_imp["<partner>"]["split"] == partner_splits
    assert set(bank_imp) - {"<partner>"} == {f"x{i}" for i in range(10)}
    partner_model = json.loads((out / "partner" / "secureboost_model.json").read_text())
    assert partner_model["role"] == "partner" and "trees" not in partner_model
    assert not (out / "partner" / "predictions.csv").exists()


def test_secureboost_step_rejects_bad_parameters(tmp_path: Path) -> None:
    _tables(tmp_path, 20)
    job = _job(tmp_path, [{"secureboost": {"max_depht": 3}}])
    with pytest.raises(ConfigError, match="max_depht"):
        load_job(job)
    job = _job(tmp_path, [{"secureboost": {"key_bits": 1024}}])
    with pytest.raises(ConfigError, match="key_bits"):
        load_job(job)
