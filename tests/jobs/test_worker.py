"""The worker's event channel to the parent."""

from __future__ import annotations

import io
import json

from veil.jobs.worker import Events, WorkerConfig


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
    )
    assert WorkerConfig.from_json(cfg.to_json()) == cfg
