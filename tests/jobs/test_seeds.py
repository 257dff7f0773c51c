"""Reproducible by default: the same job on the same data gives the same model and scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.jobs import fake_steps
from tests.jobs.conftest import write_job, write_table
from tests.jobs.procs import veil_env
from veil.jobs import RunOptions, load_job, run_job
from veil.jobs.seeds import DERIVED, job_digest, step_seed


@pytest.fixture(autouse=True)
def _steps_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fake_steps.seeded is not None
    for k, v in veil_env().items():
        monkeypatch.setenv(k, v)


def test_a_step_that_takes_a_seed_gets_one_derived_from_the_job(jobdir: Path) -> None:
    job = load_job(write_job(jobdir, ["_echo", "_seeded", {"_seeded": {"seed": 5}}, "split"]))
    echo, derived, given, split = job.steps
    assert "seed" not in echo.params and not echo.derived_seed  # takes no seed
    as_written = [("_echo", {}), ("_seeded", {}), ("_seeded", {"seed": 5}), ("split", split.params)]
    digest = job_digest(job.name, job.party_names, as_written)
    assert derived.derived_seed and derived.params["seed"] == step_seed(digest, 1)
    assert given.params["seed"] == 5 and not given.derived_seed
    assert split.params["seed"] == 42 and not split.derived_seed  # its own documented default
    again = load_job(job.path)
    assert again.steps[1].params["seed"] == derived.params["seed"]  # every site, every run
    raw = yaml.safe_load(job.path.read_text())  # the other site lists the parties the other way
    raw["parties"] = dict(reversed(list(raw["parties"].items())))
    (jobdir / "site2.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert load_job(jobdir / "site2.yaml").steps[1].params["seed"] == derived.params["seed"]
    other = load_job(write_job(jobdir / "other", ["_echo", "_seeded"], name="other-job"))
    assert other.steps[1].params["seed"] != derived.params["seed"]


def test_same_job_twice_gives_the_same_outputs_and_says_where_the_seed_came_from(
    jobdir: Path,
) -> None:
    job = load_job(write_job(jobdir, ["_seeded"]))
    runs = [run_job(job, jobdir / run, RunOptions(timeout=30)) for run in ("a", "b")]
    assert all(r.ok for r in runs), [r.error for r in runs]
    for party in ("bank", "partner"):
        a, b = (jobdir / run / party / "draws.txt" for run in ("a", "b"))
        assert a.read_bytes() == b.read_bytes()
    seed = runs[0].report["steps"][0]["seed"]
    assert seed == {"value": job.steps[0].params["seed"], "source": DERIVED}
    assert json.loads((jobdir / "a" / "report.json").read_text())["steps"][0]["seed"] == seed


def test_without_the_derived_seed_the_outputs_would_differ(jobdir: Path) -> None:
    """The check above can fail: the same step with no seed at all draws afresh."""
    from veil.jobs.context import StepContext

    outs = []
    for i in range(2):
        ctx = StepContext("bank", None, None, "id", None, jobdir / str(i))  # type: ignore[arg-type]
        fake_steps.seeded(ctx, {})
        outs.append((jobdir / str(i) / "draws.txt").read_bytes())
    assert outs[0] != outs[1]


@pytest.mark.slow  # two runs of vertical LR with 2048-bit keys: ~20 s on a quiet machine
def test_hetero_lr_twice_gives_byte_identical_models_and_predictions(jobdir: Path) -> None:
    """Byte for byte with ``protocol: he`` (and ``gram``). The default, secret-sharing LR,
    truncates on fresh random shares, so a rerun agrees only to about 1e-4 (with the same
    model id and batches): ``tests/ml/test_ss_lr_epochs.py::test_a_rerun_with_the_same_seed``."""
    jobdir.mkdir(parents=True)
    write_table(jobdir / "bank.csv", [f"c{i}" for i in range(240)], label=True, seed=1)
    write_table(jobdir / "partner.csv", [f"c{i}" for i in range(40, 280)], label=False, seed=2)
    steps = ["psi", "split", {"hetero_lr": {"epochs": 2, "batch_size": 64, "protocol": "he"}}]
    job = load_job(write_job(jobdir, steps))
    runs = [run_job(job, jobdir / run, RunOptions(timeout=120)) for run in ("a", "b")]
    assert all(r.ok for r in runs), [r.error for r in runs]
    for f in ("bank/model.json", "partner/model.json", "bank/predictions.csv"):
        assert (jobdir / "a" / f).read_bytes() == (jobdir / "b" / f).read_bytes(), f
    assert runs[0].report["steps"][2]["seed"]["source"] == DERIVED
