"""The shipped example jobs parse and validate (the README's demo must never rot)."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.jobs.spec import load_job

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["psi.yaml", "credit_risk.yaml", "credit_risk_ss.yaml"])
def test_example_job_validates(name: str) -> None:
    job = load_job(EXAMPLES / name)
    assert [p.name for p in job.parties] == ["bank", "partner"]
    assert job.steps[0].name == "psi"


def test_three_party_example_validates() -> None:
    job = load_job(EXAMPLES / "credit_risk_3party.yaml")
    assert [p.name for p in job.parties] == ["bank", "bureau", "telco"]
    assert [s.name for s in job.steps][:2] == ["psi", "split"]


def test_credit_risk_runs_the_whole_idiom() -> None:
    job = load_job(EXAMPLES / "credit_risk.yaml")
    assert [s.name for s in job.steps] == [
        "psi",
        "split",
        "binning",
        "select",
        "hetero_lr",
        "evaluate",
        "scorecard",
    ]
