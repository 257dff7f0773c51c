"""Helpers for job tests: small CSV tables and job files in a temp folder, and a step
run at every party in threads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from veil.jobs.context import StepContext, StepState
from veil.jobs.registry import get
from veil.net.local import run_parties


def write_table(path: Path, ids: Sequence[str], *, label: bool, seed: int = 0) -> pd.DataFrame:
    """A party table: ids, two features, and a 0/1 label column ``y`` if asked."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": list(ids)})
    if label:
        df["y"] = rng.integers(0, 2, len(ids))
    df["x0"] = rng.normal(size=len(ids)).round(6)
    df["x1"] = rng.normal(size=len(ids)).round(6)
    df.to_csv(path, index=False)
    return df


def write_job(folder: Path, steps: list[Any], **overrides: Any) -> Path:
    """A two-party job (bank with label, partner without) over small tables."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "bank.csv").exists():
        write_table(folder / "bank.csv", [f"c{i}" for i in range(40)], label=True, seed=1)
        write_table(folder / "partner.csv", [f"c{i}" for i in range(20, 70)], label=False, seed=2)
    job: dict[str, Any] = {
        "name": "test-job",
        "parties": {
            "bank": {"data": "bank.csv", "id": "id", "label": "y"},
            "partner": {"data": "partner.csv", "id": "id"},
        },
        "steps": steps,
    }
    job.update(overrides)
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def run_step(  # noqa: PLR0917
    step: str,
    norm: Any,
    frames: dict[str, pd.DataFrame],
    out: Path,
    states: dict[str, StepState] | None = None,
    timeout: float = 120,
) -> dict[str, Any]:
    """Step ``step`` (validated parameters ``norm``) at every party of ``frames`` in
    threads: ids in ``id``, labels ``y`` at bank, output in ``out / party``; ``states``
    (default: a fresh one each)."""
    sdef = get(step)

    def role(party: str) -> Any:
        def fn(s: Any) -> Any:
            ctx = StepContext(
                party=party,
                session=s,
                frame=frames[party],
                id_col="id",
                label_col="y" if party == "bank" else None,
                out_dir=out / party,
                state=StepState() if states is None else states[party],
            )
            return sdef.run(ctx, norm)

        return fn

    return run_parties({p: role(p) for p in frames}, timeout=timeout)


@pytest.fixture
def jobdir(tmp_path: Path) -> Path:
    return tmp_path / "job"
