"""report.json building and the live display, without running parties."""

from __future__ import annotations

import io

from rich.console import Console

from veil.jobs.display import LiveDisplay
from veil.jobs.report import StepRecord, build_report, merge_outputs


def test_merge_outputs_keeps_agreement_once_and_differences_per_party() -> None:
    merged = merge_outputs(
        {
            "bank": {"intersection_size": 7, "n_input": 10, "auc": None},
            "partner": {"intersection_size": 7, "n_input": 12, "only_me": [1, 2]},
        }
    )
    assert merged == {
        "intersection_size": 7,
        "n_input": {"bank": 10, "partner": 12},
        "auc": None,
        "only_me": [1, 2],
    }


def test_build_report_orders_parties_and_fills_traffic() -> None:
    s = StepRecord("psi", status="ok", started=1.0, ended=3.5)
    s.outputs = {"partner": {"x": 1}, "bank": {"x": 1}}
    s.traffic = {"partner": {"bytes_sent": 5}, "bank": {"bytes_sent": 9, "bytes_received": 5}}
    r = build_report("job", ["bank", "partner"], [s, StepRecord("next")], "boom", 4.0)
    assert r["status"] == "failed" and r["error"] == "boom"
    psi, nxt = r["steps"]
    assert psi["seconds"] == 2.5 and list(psi["party_outputs"]) == ["bank", "partner"]
    assert psi["traffic"]["partner"] == {
        "bytes_sent": 5,
        "bytes_received": 0,
        "messages_sent": 0,
        "messages_received": 0,
    }
    assert nxt == {
        "name": "next",
        "status": "not run",
        "seconds": None,
        "outputs": {},
        "party_outputs": {},
        "traffic": {},
    }


def test_live_display_shows_steps_parties_and_status() -> None:
    buf = io.StringIO()
    d = LiveDisplay(Console(file=buf, width=120, force_terminal=False))
    d.start("demo", ["psi", "train"], ["bank", "partner"])
    d.update(0, status="running")
    d.update(0, party="bank", fraction=0.5, msg="batches")
    d.update(0, status="ok", seconds=1.25)
    d.update(1, status="failed")
    d.stop()
    text = buf.getvalue()
    for needle in ("veil run: demo", "bank", "partner", "psi", "ok", "failed", "50%", "1.2"):
        assert needle in text, needle
