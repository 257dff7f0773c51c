"""The worker: its event channel, its config, the job handshake's typed messages, and
how a crash is explained."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.jobs import fake_steps
from tests.jobs.conftest import write_job
from veil.errors import ConfigError, ProtocolError
from veil.jobs import load_job
from veil.jobs.handshake import JobSummary, Tag, check_same_job, parse_done
from veil.jobs.supervise import crash_text
from veil.jobs.worker import Events, WorkerConfig
from veil.net import Session, run_parties


def test_progress_is_throttled_per_step_but_ends_and_new_steps_get_through() -> None:
    buf = io.StringIO()
    ev = Events(buf)
    for i in range(1000):
        ev.progress(0, i / 100_000, "tiny steps")  # 1000 updates within 1 %
    ev.progress(0, 1.0, "done")
    ev.progress(1, 0.0, "next step")
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert len(lines) < 10
    assert lines[-2] == {"event": "progress", "step": 0, "fraction": 1.0, "msg": "done"}
    assert lines[-1]["step"] == 1 and lines[-1]["fraction"] == 0.0


def test_worker_config_round_trips_through_json() -> None:
    cfg = WorkerConfig(
        job="/j.yaml",
        party="bank",
        out_dir="/o/bank",
        names=("bank", "partner"),
        addresses=("127.0.0.1:1", "127.0.0.1:2"),
        ca_cert="ca.crt",
        cert="bank.crt",
        key="bank.key",
        timeout=5.0,
        listen="0.0.0.0:1",
        staging="/o/.veil-staging-x",
        tell_peers=False,
    )
    assert WorkerConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (["not", "a", "dict"], "(message)"),
        ({"name": 3, "parties": [], "steps": []}, "name"),
        ({"name": "j", "parties": "bank", "steps": []}, "parties"),
        ({"name": "j", "parties": ["bank"], "steps": {}}, "steps"),
        ({"name": "j", "parties": ["bank"], "steps": [["psi"]]}, "steps[0]"),
        ({"name": "j", "parties": ["bank"], "steps": [["psi", []]]}, "steps[0]"),
    ],
)
def test_malformed_job_message_is_a_protocol_error_naming_tag_and_field(
    value: object, field: str
) -> None:
    with pytest.raises(
        ProtocolError, match=rf"^message 'job' from partner: field '{re.escape(field)}'"
    ):
        JobSummary.from_wire(value, "partner")


def test_done_must_be_true() -> None:
    parse_done(True, "bank")
    with pytest.raises(ProtocolError, match=r"message 'done' from bank: field '\(message\)'"):
        parse_done({"done": 1}, "bank")


def test_peers_with_different_jobs_stop_naming_the_field(jobdir: Path) -> None:
    assert fake_steps.echo is not None  # registers _echo and _write
    ours = load_job(write_job(jobdir / "a", ["psi", "_echo"]))
    theirs = load_job(write_job(jobdir / "b", ["psi", "_write"]))

    def role(s: Session) -> None:
        spec = {"bank": ours, "partner": theirs}[s.me]
        check_same_job(s, spec)

    with pytest.raises(ConfigError, match=r"steps\[1\]: this job file differs from party"):
        run_parties({"bank": role, "partner": role})
    assert JobSummary.of(ours) != JobSummary.of(theirs)

    def liar(s: Session) -> None:  # sends a list where the summary goes (the 15.4 bug)
        s.send("bank", Tag.JOB, ["surprise"])
        s.recv("bank", Tag.JOB)

    with pytest.raises(ProtocolError, match=r"message 'job' from partner: field '\(message\)'"):
        run_parties({"bank": lambda s: check_same_job(s, ours), "partner": liar})


def test_crash_text_names_the_signal_or_the_last_logged_error(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_text(
        "<frozen runpy>:128: RuntimeWarning: 'x' found in sys.modules\n"
        'Traceback (most recent call last):\n  File "a.py", line 1\n'
        "MemoryError\nflushing\n"
    )
    assert crash_text(-9, log) == "crashed (killed by signal 9, SIGKILL): MemoryError"
    log.write_text("<frozen runpy>:128: RuntimeWarning: 'x' found in sys.modules\n")
    assert crash_text(-9, log) == "crashed (killed by signal 9, SIGKILL)"
    assert crash_text(3, tmp_path / "none.log") == "crashed (exit code 3)"


def test_the_worker_module_starts_without_a_runtime_warning() -> None:
    """``python -m veil.jobs.worker`` is not imported by ``veil.jobs`` (runpy would warn)."""
    proc = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "veil.jobs.worker", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "RuntimeWarning" not in proc.stderr


def test_the_handshake_carries_no_data(jobdir: Path) -> None:
    """The job summary and the goodbye: names and parameters, no id, label or feature."""
    import pandas as pd

    from tests.wire_check import Recorder, assert_no_leak
    from veil.jobs.handshake import say_done

    spec = load_job(write_job(jobdir, ["psi", {"split": {"test_size": 0.25}}]))
    bank = pd.read_csv(jobdir / "bank.csv", dtype={"id": str})
    partner = pd.read_csv(jobdir / "partner.csv", dtype={"id": str})

    def role(s: Session) -> None:
        check_same_job(s.sub("start"), spec)
        say_done(s.sub("end"))

    rec = Recorder()
    run_parties({"bank": role, "partner": role}, tap=rec)
    assert len(rec.frames) == 4
    assert_no_leak(
        rec.frames,
        {
            "ids": [*bank["id"], *partner["id"]],
            "labels": bank["y"].to_numpy(),
            "bank x0": bank["x0"].to_numpy(),
            "partner x1": partner["x1"].to_numpy(),
        },
    )
