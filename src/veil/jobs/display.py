"""What ``veil run`` shows while a job runs.

On a terminal, :class:`LiveDisplay` redraws a table: one row per step, one progress
column per local party, and below it what each party is waiting for (``waiting for
partner (connecting, 12 s)``). Step names are never cut: in a narrow terminal the
party columns give way (percentages first, then bars and messages). Without a
terminal (a log file, CI), :class:`LineDisplay` prints one line per step start and
end, progress milestones and waits. ``--quiet`` uses :class:`Display`, which
shows nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {
    "pending": "dim",
    "running": "yellow",
    "ok": "green",
    "failed": "bold red",
    "not run": "dim",
}
MILESTONES = (0.25, 0.5, 0.75)  # progress a LineDisplay reports
WAIT_EVERY_S = 15  # a LineDisplay repeats a wait line this often


class Display:
    """What the runner tells the user; this base class shows nothing (``--quiet``)."""

    def start(self, job: str, steps: Sequence[str], parties: Sequence[str]) -> None:
        """The job is about to start."""

    def update(self, step: int, *, status: str | None = None, **fields: object) -> None:
        """Step ``step`` changed: ``status``, ``seconds``, or ``party`` + ``fraction``/``msg``."""

    def waiting(self, party: str, peer: str | None, state: str = "", seconds: int = 0) -> None:
        """Local ``party`` has waited ``seconds`` for ``peer`` (``state``: ``connecting``,
        ``busy``, ``silent 4 s``); ``peer`` None: it waits no more."""

    def note(self, text: str) -> None:
        """A line to show once (a warning, a removed stale folder)."""

    def stop(self) -> None:
        """The job ended (the final table stays on screen)."""


class LiveDisplay(Display):
    """A rich table on stderr, redrawn a few times a second."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._live: Live | None = None
        self._job = ""
        self._steps: list[dict[str, Any]] = []
        self._parties: list[str] = []
        self._waits: dict[str, str] = {}

    def start(self, job: str, steps: Sequence[str], parties: Sequence[str]) -> None:
        self._job = job
        self._parties = list(parties)
        self._steps = [
            {"name": s, "status": "pending", "seconds": None, "party": {}} for s in steps
        ]
        self._live = Live(self._render(), console=self.console, refresh_per_second=4)
        self._live.start()

    def update(self, step: int, *, status: str | None = None, **fields: object) -> None:
        if not 0 <= step < len(self._steps):
            return
        row = self._steps[step]
        if status is not None:
            row["status"] = status
        if "seconds" in fields:
            row["seconds"] = fields["seconds"]
        party = fields.get("party")
        if party is not None:
            cell = row["party"].setdefault(party, {"fraction": 0.0, "msg": ""})
            if "fraction" in fields:
                cell["fraction"] = fields["fraction"]
            if fields.get("msg"):
                cell["msg"] = fields["msg"]
        self._refresh()

    def waiting(self, party: str, peer: str | None, state: str = "", seconds: int = 0) -> None:
        if peer is None:
            self._waits.pop(party, None)
        else:
            self._waits[party] = wait_text(peer, state, seconds)
        self._refresh()

    def note(self, text: str) -> None:
        self.console.print(Text(text, style="yellow" if text.startswith("warning") else ""))

    def stop(self) -> None:
        if self._live is not None:
            self._waits.clear()
            self._live.update(self._render())
            self._live.stop()
            self._live = None
            if not self.console.is_terminal:
                self.console.line()  # rich leaves the last line open when not on a terminal

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Group:
        t = Table(title=f"veil run: {self._job}", title_justify="left", pad_edge=False)
        step_w = max((len(r["name"]) for r in self._steps), default=4)
        num_w = len(str(max(len(self._steps) - 1, 0)))
        t.add_column("#", justify="right", no_wrap=True, width=num_w)
        t.add_column("step", no_wrap=True, width=step_w)
        t.add_column("status", no_wrap=True, width=7)
        party_w = self._party_width(num_w + step_w + 7 + 5)
        for p in self._parties:
            t.add_column(p, no_wrap=True, overflow="ellipsis", width=party_w)
        t.add_column("s", justify="right", no_wrap=True, width=5)
        for i, row in enumerate(self._steps):
            cells = []
            for p in self._parties:
                c = row["party"].get(p)
                cells.append("" if c is None else _cell(c["fraction"], c["msg"], party_w))
            secs = "" if row["seconds"] is None else f"{row['seconds']:.1f}"
            style = STATUS_STYLE.get(row["status"], "")
            t.add_row(
                str(i),
                row["name"],
                f"[{style}]{row['status']}[/]" if style else row["status"],
                *cells,
                secs,
            )
        lines = [
            Text(f"{p}: {w}" if len(self._parties) > 1 else w, style="cyan")
            for p, w in self._waits.items()
        ]
        return Group(t, *lines)

    def _party_width(self, fixed: int) -> int:
        """What is left for each party's column once the fixed columns have theirs.

        Each column costs its width, two spaces of padding and a rule (the outer two
        columns one space less each); the step names keep their full width.
        """
        n_cols = 4 + len(self._parties)
        left = self.console.width - fixed - 3 * n_cols - 1 + 2
        return max(4, min(36, left // max(len(self._parties), 1)))


class LineDisplay(Display):
    """Plain lines for logs: step start and end, progress milestones, waits, notes."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self._out = out
        self._steps: list[str] = []
        self._parties: list[str] = []
        self._marks: dict[tuple[int, str], int] = {}
        self._status: dict[int, str] = {}
        self._waits: dict[str, tuple[str, int]] = {}  # party -> (peer and state, period)
        self._t0 = time.monotonic()

    def _say(self, text: str) -> None:
        out = self._out or sys.stderr
        print(f"[{time.monotonic() - self._t0:7.1f} s] {text}", file=out, flush=True)

    def start(self, job: str, steps: Sequence[str], parties: Sequence[str]) -> None:
        self._steps, self._parties = list(steps), list(parties)
        self._say(f"veil run: {job}: {len(steps)} steps, parties here: {', '.join(parties)}")

    def update(self, step: int, *, status: str | None = None, **fields: object) -> None:
        if not 0 <= step < len(self._steps):
            return
        name = f"step {step} '{self._steps[step]}'"
        if status is not None and self._status.get(step) != status:
            self._status[step] = status
            secs = fields.get("seconds")
            self._say(f"{name}: {status}" + ("" if secs is None else f" in {secs:.1f} s"))
        party, fraction = fields.get("party"), fields.get("fraction")
        if isinstance(party, str) and isinstance(fraction, int | float):
            reached = sum(fraction >= m for m in MILESTONES)
            if reached > self._marks.get((step, party), 0):
                self._marks[(step, party)] = reached
                self._say(f"{name}: {party} {fraction:.0%}")

    def waiting(self, party: str, peer: str | None, state: str = "", seconds: int = 0) -> None:
        if peer is None:
            self._waits.pop(party, None)
            return
        now = (f"{peer} {state}", seconds // WAIT_EVERY_S)
        if self._waits.get(party) != now:
            self._waits[party] = now
            text = wait_text(peer, state, seconds)
            self._say(f"{party}: {text}" if len(self._parties) > 1 else text)

    def note(self, text: str) -> None:
        self._say(text)


def wait_text(peer: str, state: str, seconds: int) -> str:
    """``waiting for partner (connecting, 12 s)``."""
    return f"waiting for {peer} ({state}, {seconds} s)"


def _cell(fraction: float, msg: str, width: int = 36) -> str:
    """``' 60% ██████···· msg'`` in ``width`` characters: the percentage first, then as much
    of the bar and the message as fit."""
    text = f"{fraction * 100:3.0f}%"
    bar = min(10, width - len(text) - 1)
    if bar >= 3:
        full = round(fraction * bar)
        text += " " + "█" * full + "·" * (bar - full)
    if msg and width - len(text) >= 4:
        room = width - len(text) - 1
        text += " " + (msg if len(msg) <= room else msg[: room - 1] + "…")
    return text
