"""Where a node keeps its state: one interface, an in-memory and a SQL implementation.

Every state change is one call to :meth:`Store.change` with the :class:`Event` that
describes it; the writes made in that block and the event are one transaction (the
SQL store appends the event through an :class:`EventSink` on the same connection, so
the audit log can replace the plain events table without touching the callers).
Progress fractions are not state changes: :meth:`Store.progress` writes them alone.
Both implementations pass the same tests (``tests/node/test_store.py``).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from veil.node.model import Artifact, Dataset, Event, Job, Role, StepState, Vote


class EventSink(Protocol):
    """Records events; ``conn`` is the open SQL connection of the change (or None)."""

    def append(self, conn: Any, event: Event) -> None:
        """Record ``event`` inside the caller's transaction."""


class Tx(Protocol):
    """The writes of one state change."""

    def add_token(self, digest: str, role: Role) -> None:
        """Store a token's SHA-256 (never the token) and its role."""

    def put_dataset(self, d: Dataset) -> None:
        """Insert or replace a dataset."""

    def put_job(self, j: Job) -> None:
        """Insert or replace a job."""

    def put_vote(self, v: Vote) -> None:
        """Insert or replace a party's vote."""

    def put_step(self, s: StepState) -> None:
        """Insert or replace a step state."""

    def put_artifact(self, a: Artifact) -> None:
        """Record an output file."""


class Store(Protocol):
    """A node's storage."""

    def change(self, event: Event) -> AbstractContextManager[Tx]:
        """A transaction whose writes and ``event`` commit together or not at all."""

    def progress(self, s: StepState) -> None:
        """Update a step's progress (not an event)."""

    def token_role(self, digest: str) -> Role | None:
        """The role of the token with SHA-256 ``digest``, if any."""

    def dataset(self, name: str) -> Dataset | None:
        """The dataset called ``name``."""

    def datasets(self) -> list[Dataset]:
        """Every dataset, by name."""

    def job(self, job_id: str) -> Job | None:
        """The job ``job_id``."""

    def jobs(self) -> list[Job]:
        """Every job, newest first."""

    def votes(self, job_id: str) -> list[Vote]:
        """The votes on a job, by party."""

    def steps(self, job_id: str) -> list[StepState]:
        """The step states of a job, by index."""

    def artifacts(self, job_id: str) -> list[Artifact]:
        """A job's output files, by name."""

    def events(self, job_id: str | None = None) -> list[Event]:
        """Events in the order they happened (of one job, or all)."""

    def close(self) -> None:
        """Release connections."""


class _MemoryTx:
    def __init__(self, data: dict[str, dict[Any, Any]]) -> None:
        self.data = data

    def add_token(self, digest: str, role: Role) -> None:
        self.data["tokens"][digest] = role

    def put_dataset(self, d: Dataset) -> None:
        self.data["datasets"][d.name] = d

    def put_job(self, j: Job) -> None:
        self.data["jobs"][j.id] = j

    def put_vote(self, v: Vote) -> None:
        self.data["votes"][(v.job_id, v.party)] = v

    def put_step(self, s: StepState) -> None:
        self.data["steps"][(s.job_id, s.index)] = s

    def put_artifact(self, a: Artifact) -> None:
        self.data["artifacts"][(a.job_id, a.name)] = a


class MemoryStore:
    """A :class:`Store` in a dict (tests, and the reference for the SQL one)."""

    TABLES = ("tokens", "datasets", "jobs", "votes", "steps", "artifacts")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._data: dict[str, dict[Any, Any]] = {t: {} for t in self.TABLES}
        self._events: list[Event] = []

    @contextmanager
    def _change(self, event: Event) -> Iterator[Tx]:
        with self._lock:
            work = {t: dict(v) for t, v in self._data.items()}
            yield _MemoryTx(work)
            self._data = work  # only reached without an exception: all or nothing
            self._events.append(copy.deepcopy(event))

    def change(self, event: Event) -> AbstractContextManager[Tx]:
        return self._change(event)

    def progress(self, s: StepState) -> None:
        with self._lock:
            self._data["steps"][(s.job_id, s.index)] = s

    def token_role(self, digest: str) -> Role | None:
        with self._lock:
            r = self._data["tokens"].get(digest)
            return None if r is None else Role(r)

    def dataset(self, name: str) -> Dataset | None:
        with self._lock:
            d: Dataset | None = self._data["datasets"].get(name)
            return d

    def datasets(self) -> list[Dataset]:
        with self._lock:
            return sorted(self._data["datasets"].values(), key=lambda d: d.name)

    def job(self, job_id: str) -> Job | None:
        with self._lock:
            j: Job | None = self._data["jobs"].get(job_id)
            return j

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._data["jobs"].values(), key=lambda j: (-j.created, j.id))

    def votes(self, job_id: str) -> list[Vote]:
        with self._lock:
            vs = [v for (j, _), v in self._data["votes"].items() if j == job_id]
            return sorted(vs, key=lambda v: v.party)

    def steps(self, job_id: str) -> list[StepState]:
        with self._lock:
            ss = [s for (j, _), s in self._data["steps"].items() if j == job_id]
            return sorted(ss, key=lambda s: s.index)

    def artifacts(self, job_id: str) -> list[Artifact]:
        with self._lock:
            arts = [a for (j, _), a in self._data["artifacts"].items() if j == job_id]
            return sorted(arts, key=lambda a: a.name)

    def events(self, job_id: str | None = None) -> list[Event]:
        with self._lock:
            return [e for e in self._events if job_id is None or e.job_id == job_id]

    def close(self) -> None:
        pass
