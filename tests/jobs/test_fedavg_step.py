"""The fedavg step with evaluate: job files, a whole run, aborts that save nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.ml.horizontal.helpers import small_banks
from veil.errors import ConfigError
from veil.jobs import RunOptions, StepContext, load_job, run_job
from veil.jobs.spec import load_frame
from veil.jobs.steps.evaluate import evaluate as evaluate_step
from veil.jobs.steps.fedavg import fedavg as fedavg_step
from veil.jobs.steps.fedavg import top_k_alerts
from veil.net import Session, run_parties
from veil.protocols.secagg import RoundAborted, Tag

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _write(folder: Path, banks: int = 3, rows: int = 120, test: bool = True) -> dict[str, Any]:
    """Bank tables (and a pooled test table for the hub); the job's parties."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = small_banks(banks + 1, rows)
    parties: dict[str, Any] = {"hub": {"id": "id"}}
    for i in range(banks):
        frames[f"bank{i}"].to_csv(folder / f"bank{i}.csv", index=False)
        parties[f"bank{i}"] = {"data": f"bank{i}.csv", "id": "id", "label": "y"}
    if test:
        frames[f"bank{banks}"].to_csv(folder / "test.csv", index=False)
        parties["hub"] |= {"test": "test.csv", "label": "y"}
    return parties


def _job(folder: Path, parties: dict[str, Any], steps: list[Any]) -> Path:
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump({"name": "hfl", "parties": parties, "steps": steps}))
    return path


@pytest.mark.parametrize("name", ["aml.yaml", "horizontal_credit.yaml"])
def test_example_jobs_validate(name: str) -> None:
    job = load_job(EXAMPLES / name)
    assert [s.name for s in job.steps] == ["fedavg", "evaluate"]
    assert job.steps[0].params["aggregator"] == "hub"
    assert job.party("hub").data is None and job.party("hub").test is not None
    assert len(job.steps[0].params["banks"]) == 3


def test_fedavg_and_evaluate_write_model_predictions_and_metrics(tmp_path: Path) -> None:
    parties = _write(tmp_path)
    steps = [
        {"fedavg": {"rounds": 5, "learning_rate": 0.5, "validation_share": 0.25}},
        {"evaluate": {"top_k": [10, 30]}},
    ]
    out = tmp_path / "out"
    res = run_job(load_job(_job(tmp_path, parties, steps)), out, RunOptions(timeout=120))
    assert res.ok, res.error
    models = {p: json.loads((out / p / "model.json").read_text()) for p in parties}
    assert len({json.dumps(m["params"]) for m in models.values()}) == 1  # one global model
    assert models["hub"]["rounds"][-1]["banks"] == 3
    bank = pd.read_csv(out / "bank1" / "predictions.csv")
    assert list(bank.columns) == ["id", "score", "label", "set"]
    assert bank["set"].value_counts().to_dict() == {"train": 90, "holdout": 30}
    hub = pd.read_csv(out / "hub" / "predictions.csv")
    assert set(hub["set"]) == {"test"} and len(hub) == 120
    metrics = json.loads((out / "hub" / "metrics.json").read_text())
    y, s = hub["label"].to_numpy(), hub["score"].to_numpy()
    assert metrics["top_k"]["test"][0] == top_k_alerts(y, s, 10)
    ev = res.report["steps"][1]["party_outputs"]
    assert ev["hub"]["auc_test"] > 0.7 and "auc_holdout" in ev["bank0"]
    assert (out / "bank2" / "report.html").exists()


def test_top_k_alerts() -> None:
    y = np.array([1, 0, 1, 0, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    assert top_k_alerts(y, s, 2) == {"k": 2, "precision": 0.5, "recall": 1 / 3}
    assert top_k_alerts(y, s, 10) == {"k": 6, "precision": 0.5, "recall": 1.0}


def test_job_file_mistakes_name_the_field(tmp_path: Path) -> None:
    parties = _write(tmp_path)
    fed: dict[str, Any] = {"fedavg": {}}
    bad = {**parties, "bank1": {**parties["bank1"]}}
    del bad["bank1"]["label"]
    with pytest.raises(ConfigError, match=r"parties\.bank1\.label: a fedavg bank needs a label"):
        load_job(_job(tmp_path, bad, [fed]))
    with pytest.raises(ConfigError, match=r"aggregator: unknown party 'hb'"):
        load_job(_job(tmp_path, parties, [{"fedavg": {"aggregator": "hb"}}]))
    no_hub = {k: v for k, v in parties.items() if k != "hub"}
    with pytest.raises(ConfigError, match="0 parties have no data"):
        load_job(_job(tmp_path, no_hub, [fed]))
    two = {k: v for k, v in no_hub.items() if k != "bank2"}
    with pytest.raises(ConfigError, match="name a party without data as the aggregator"):
        load_job(_job(tmp_path, two, [{"fedavg": {"aggregator": "bank0"}}]))
    job = load_job(_job(tmp_path, no_hub, [{"fedavg": {"aggregator": "bank0"}}]))
    assert job.steps[0].params["banks"] == ["bank0", "bank1", "bank2"]
    with pytest.raises(ConfigError, match=r"dropout_threshold.*use 0\.\.1"):
        load_job(_job(tmp_path, parties, [{"fedavg": {"dropout_threshold": 2}}]))
    with pytest.raises(ConfigError, match=r"fedavg\.roundz: unknown parameter"):
        load_job(_job(tmp_path, parties, [{"fedavg": {"roundz": 2}}]))
    with pytest.raises(ConfigError, match=r"fedavg\.early_stopping: the pooled validation"):
        load_job(_job(tmp_path, parties, [{"fedavg": {"dp": True, "early_stopping": 2}}]))


def test_a_test_file_with_other_columns_is_refused_naming_party_and_column(tmp_path: Path) -> None:
    parties = _write(tmp_path)
    pd.read_csv(tmp_path / "bank0.csv").rename(columns={"b": "bb"}).to_csv(
        tmp_path / "bank0_test.csv", index=False
    )
    parties["bank0"]["test"] = "bank0_test.csv"
    with pytest.raises(ConfigError, match=r"parties\.bank0\.test: column 'b' of bank0\.csv is"):
        load_job(_job(tmp_path, parties, [{"fedavg": {}}]))


def test_parties_without_data_and_labels_without_rows(tmp_path: Path) -> None:
    parties = _write(tmp_path, test=False)
    job = load_job(_job(tmp_path, parties, [{"fedavg": {}}]))
    hub = job.party("hub")
    assert hub.data is None and hub.test is None
    assert list(load_frame(hub).columns) == ["id"] and len(load_frame(hub)) == 0
    parties["hub"]["label"] = "y"
    with pytest.raises(ConfigError, match=r"parties\.hub\.label: a party without data or test"):
        load_job(_job(tmp_path, parties, [{"fedavg": {}}]))


class _Dropped(Exception):
    pass


class _Dropping:
    """A session (and its subs) that goes silent before sending secagg's MASKED."""

    def __init__(self, inner: Session) -> None:
        self._inner = inner

    def send(self, to: str, tag: str, value: Any) -> None:
        if tag == Tag.MASKED:
            raise _Dropped
        self._inner.send(to, tag, value)

    def sub(self, name: str) -> _Dropping:
        return _Dropping(self._inner.sub(name))

    def with_roles(self, roles: Any) -> _Dropping:
        return _Dropping(self._inner.with_roles(roles))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_round_losing_too_many_banks_aborts_and_no_model_is_written(tmp_path: Path) -> None:
    parties = _write(tmp_path, banks=5, test=False)
    params = {"rounds": 2, "phase_timeout": 1.0}
    job = load_job(_job(tmp_path, parties, [{"fedavg": params}]))
    step = job.steps[0]
    assert step.params["aggregator"] == "hub"
    dropping = {"bank0", "bank2", "bank4"}  # 3 of 5; at most 2 may drop
    errors: dict[str, BaseException] = {}

    def party(name: str) -> Any:
        def run(s: Session) -> None:
            spec = job.party(name)
            frame = load_frame(spec)
            sess: Any = _Dropping(s) if name in dropping else s
            ctx = StepContext(name, sess, frame, spec.id, spec.label, tmp_path / "out" / name)
            try:
                fedavg_step(ctx, step.params)
            except (_Dropped, RoundAborted) as e:
                errors[name] = e

        return run

    run_parties({p: party(p) for p in job.party_names}, parties=job.party_names, timeout=30)
    assert isinstance(errors["hub"], RoundAborted)
    assert "3 of 5 banks dropped" in str(errors["hub"])
    for b in ("bank1", "bank3"):
        assert isinstance(errors[b], RoundAborted)
    assert not list((tmp_path / "out").rglob("model.json"))


def test_evaluate_without_fedavg_in_a_multi_label_job_says_what_to_do(tmp_path: Path) -> None:
    parties = _write(tmp_path)
    job = load_job(_job(tmp_path, parties, [{"evaluate": {}}]))
    spec = job.party("bank0")
    ctx = StepContext("bank0", None, load_frame(spec), "id", "y", tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="run fedavg before evaluate"):
        evaluate_step(ctx, job.steps[0].params)
