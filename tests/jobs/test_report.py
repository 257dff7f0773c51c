"""report.json building and the live display, without running parties."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from veil.jobs.display import LineDisplay, LiveDisplay
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
    seeded = StepRecord("hetero_lr", seed={"value": 7, "source": "derived"})
    assert build_report("job", ["bank"], [seeded], None, 1.0)["steps"][0]["seed"] == {
        "value": 7,
        "source": "derived",
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


CREDIT = ["psi", "split", "binning", "select", "hetero_lr", "secureboost", "evaluate", "scorecard"]


@pytest.mark.parametrize("parties", [["bank"], ["bank", "partner"], ["bank", "partner", "ins"]])
def test_live_display_keeps_step_names_whole_in_80_columns(parties: list[str]) -> None:
    buf = io.StringIO()
    d = LiveDisplay(Console(file=buf, width=80, force_terminal=False))
    d.start("credit-risk", [*CREDIT, "a_custom_step_named_at_length"], parties)
    d.update(0, status="ok", seconds=12.5)
    for p in parties:
        d.update(0, party=p, fraction=1.0, msg="intersection done")
    d.update(4, status="running")
    d.update(4, party="bank", fraction=0.6, msg="epoch 3/10")
    d.waiting("bank", "partner", "connecting", 12)
    frame = io.StringIO()
    Console(file=frame, width=80).print(d._render())  # what the live view shows now
    d.stop()
    for text in (buf.getvalue(), frame.getvalue()):
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= 80
        for name in [*CREDIT, "a_custom_step_named_at_length"]:
            assert any(f" {name} " in line for line in lines), name
        assert "100%" in text and " 60%" in text and "running" in text
    assert "waiting for partner (connecting, 12 s)" in frame.getvalue()


def test_line_display_prints_starts_ends_milestones_and_waits() -> None:
    buf = io.StringIO()
    d = LineDisplay(buf)
    d.start("demo", ["psi", "hetero_lr"], ["bank"])
    d.waiting("bank", "partner", "connecting", 2)
    d.waiting("bank", "partner", "connecting", 3)  # the same wait: not repeated at once
    d.waiting("bank", "partner", "connecting", 16)  # but every 15 s
    d.waiting("bank", None)
    d.update(0, status="running")
    for i in range(101):
        d.update(0, party="bank", fraction=i / 100)
    d.update(0, status="ok", seconds=1.25)
    d.note("warning: the intersection is tiny")
    lines = [line.split("] ", 1)[1] for line in buf.getvalue().splitlines()]
    assert lines == [
        "veil run: demo: 2 steps, parties here: bank",
        "waiting for partner (connecting, 2 s)",
        "waiting for partner (connecting, 16 s)",
        "step 0 'psi': running",
        "step 0 'psi': bank 25%",
        "step 0 'psi': bank 50%",
        "step 0 'psi': bank 75%",
        "step 0 'psi': ok in 1.2 s",
        "warning: the intersection is tiny",
    ]


def test_bytes_per_peer_are_reported_when_the_worker_counted_them() -> None:
    s = StepRecord("psi", status="ok", started=1.0, ended=2.0)
    s.traffic = {
        "bank": {"bytes_sent": 9, "bytes_sent:partner": 9, "bytes_received:partner": 5},
        "partner": {"bytes_sent": 5},
    }
    (row,) = build_report("job", ["bank", "partner"], [s], None, 1.0)["steps"]
    assert row["peer_traffic"] == {"bank": {"partner": {"bytes_sent": 9, "bytes_received": 5}}}
    assert (
        row["traffic"]["bank"]["bytes_sent"] == 9
        and "bytes_sent:partner" not in row["traffic"]["bank"]
    )
