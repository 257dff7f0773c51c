"""The live view of a running job: one row per step, one progress column per party."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

STATUS_STYLE = {
    "pending": "dim",
    "running": "yellow",
    "ok": "green",
    "failed": "bold red",
    "not run": "dim",
}


class Display:
    """What the runner tells the user; this base class shows nothing (``--quiet``)."""

    def start(self, job: str, steps: Sequence[str], parties: Sequence[str]) -> None:
        """The job is about to start."""

    def update(self, step: int, *, status: str | None = None, **fields: Any) -> None:
        """Step ``step`` changed: ``status``, ``seconds``, or ``party`` + ``fraction``/``msg``."""

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

    def start(self, job: str, steps: Sequence[str], parties: Sequence[str]) -> None:
        self._job = job
        self._parties = list(parties)
        self._steps = [
            {"name": s, "status": "pending", "seconds": None, "party": {}} for s in steps
        ]
        self._live = Live(self._render(), console=self.console, refresh_per_second=4)
        self._live.start()

    def update(self, step: int, *, status: str | None = None, **fields: Any) -> None:
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
        if self._live is not None:
            self._live.update(self._render())

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None
            if not self.console.is_terminal:
                self.console.line()  # rich leaves the last line open when not on a terminal

    def _render(self) -> Table:
        t = Table(title=f"veil run: {self._job}", title_justify="left")
        t.add_column("#", justify="right")
        t.add_column("step")
        t.add_column("status")
        for p in self._parties:
            t.add_column(p, no_wrap=True, overflow="ellipsis", max_width=36)
        t.add_column("seconds", justify="right")
        for i, row in enumerate(self._steps):
            cells = []
            for p in self._parties:
                c = row["party"].get(p)
                if c is None:
                    cells.append("")
                else:
                    bar = _bar(c["fraction"])
                    cells.append(f"{bar} {c['msg']}"[:36])
            secs = "" if row["seconds"] is None else f"{row['seconds']:.1f}"
            style = STATUS_STYLE.get(row["status"], "")
            t.add_row(
                str(i),
                row["name"],
                f"[{style}]{row['status']}[/]" if style else row["status"],
                *cells,
                secs,
            )
        return t


def _bar(fraction: float, width: int = 10) -> str:
    full = round(fraction * width)
    return "█" * full + "·" * (width - full) + f" {fraction * 100:3.0f}%"
