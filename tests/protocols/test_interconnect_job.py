"""The job-file option ``psi: {interconnect: true}``: same rows as the native step."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.jobs.conftest import write_job, write_table
from veil.errors import ConfigError
from veil.jobs import RunOptions, load_job, run_job


def run_psi_job(folder: Path, params: dict[str, object]) -> dict[str, pd.DataFrame]:
    job = write_job(folder, [{"psi": params}])
    res = run_job(load_job(job), folder / "out", RunOptions(timeout=60))
    assert res.ok, res.error
    (step,) = res.report["steps"]
    assert step["status"] == "ok"
    return {
        p: pd.read_csv(folder / "out" / p / "psi.csv", dtype={"id": str})
        for p in ("bank", "partner")
        if (folder / "out" / p / "psi.csv").exists()
    }


def test_interconnect_step_equals_native_step(tmp_path: Path) -> None:
    common = [f"cust-{i:04d}" for i in range(90)]
    for folder in (tmp_path / "native", tmp_path / "ic"):
        folder.mkdir()
        write_table(folder / "bank.csv", [*common, "b1", "b2", *common[:4]], label=True, seed=3)
        write_table(folder / "partner.csv", ["p1", *reversed(common), "p2"], label=False, seed=4)
    native = run_psi_job(tmp_path / "native", {"batch_size": 32})
    ic = run_psi_job(tmp_path / "ic", {"batch_size": 32, "interconnect": True})
    for p in ("bank", "partner"):
        assert sorted(ic[p]["id"]) == sorted(native[p]["id"]) == sorted(common)
        key = ic[p].sort_values("id").reset_index(drop=True)
        pd.testing.assert_frame_equal(key, native[p].sort_values("id").reset_index(drop=True))
    assert list(ic["bank"]["id"]) == list(ic["partner"]["id"])  # aligned row for row


def test_interconnect_step_result_to_one_party(tmp_path: Path) -> None:
    out = run_psi_job(tmp_path, {"result_to": ["partner"], "interconnect": True})
    assert list(out) == ["partner"] and len(out["partner"]) == 20


def test_interconnect_flag_must_be_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="interconnect"):
        load_job(write_job(tmp_path, [{"psi": {"interconnect": "yes"}}]))
