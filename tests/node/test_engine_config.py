"""A node's own engine (``engine =`` in ``[node]`` of node.toml): parsed and checked,
used by the node's job processes, and never something a partner's proposal can set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from veil.errors import ConfigError
from veil.node.config import CONFIG, load_config, render
from veil.node.jobfile import parse_node_job
from veil.node.model import JobState

from .nodes import job_text, make_nodes, running, wait_for

AUTO_BUREAU = """
[[policy.approve]]
partners = ["bank"]
steps = ["psi"]
datasets = ["bureau_data"]
"""


def set_engine(node_dir: Path, value: str) -> None:
    path = node_dir / CONFIG
    path.write_text(path.read_text().replace("[node]\n", f"[node]\nengine = {value}\n", 1))


@pytest.mark.parametrize(
    ("value", "want"),
    [('"local"', None), ('" ray://10.0.0.5:10001 "', "ray://10.0.0.5:10001")],
)
def test_engine_in_node_toml_is_parsed_and_written_back(
    tmp_path: Path, ca: Path, value: str, want: str | None
) -> None:
    d = make_nodes(tmp_path, ca, ["bank", "bureau"])["bank"]
    assert load_config(d).engine is None  # default: this machine
    set_engine(d, value)
    cfg = load_config(d)
    assert cfg.engine == want
    (d / CONFIG).write_text(render(cfg))
    assert load_config(d) == cfg


@pytest.mark.parametrize("value", ['"spark://h:7077"', '"ray://h"', "7"])
def test_a_bad_engine_names_the_field_and_the_fix(tmp_path: Path, ca: Path, value: str) -> None:
    d = make_nodes(tmp_path, ca, ["bank", "bureau"])["bank"]
    set_engine(d, value)
    with pytest.raises(ConfigError, match=r"node\.engine: .* -- use 'local' or 'ray://HOST:PORT'"):
        load_config(d)


def test_a_proposal_cannot_choose_a_partys_engine() -> None:
    text = job_text(["bank", "bureau"]).replace(
        "bureau: {dataset: bureau_data}", "bureau: {dataset: bureau_data, engine: 'ray://x:1'}"
    )
    with pytest.raises(ConfigError, match="a node job names only a dataset per party"):
        parse_node_job(text)


def test_the_nodes_engine_runs_its_jobs(tmp_path: Path, ca: Path) -> None:
    """bank's node.toml names a Ray cluster nobody runs: its job process installs that
    engine and stops with the engine's error (so the node's choice is what the job uses);
    bureau, on the local engine, learns that its partner failed."""
    pytest.importorskip("veil.engine.ray_engine", exc_type=ImportError)
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"], {"bureau": AUTO_BUREAU})
    set_engine(dirs["bank"], '"ray://127.0.0.1:9"')
    assert dataclasses.replace(load_config(dirs["bank"]), engine=None) != load_config(dirs["bank"])
    with running(dirs, launch=True) as n:
        job = n["bank"].service.submit(job_text(["bank", "bureau"]), "user:op")

        def failed(name: str) -> bool:
            j = n[name].store.job(job.id)
            return j is not None and j.state == JobState.FAILED

        wait_for(lambda: failed("bank") and failed("bureau"), 120.0, "the job to fail")
        err = n["bank"].store.job(job.id).error  # type: ignore[union-attr]
        assert err is not None and "cannot reach the Ray cluster at ray://127.0.0.1:9" in err
