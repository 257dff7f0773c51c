"""The node's records: datasets, jobs, votes, step states, artifacts and events.

Plain frozen dataclasses, shared by every :class:`veil.node.store.Store`
implementation, the service functions and the API (which turns them into JSON).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

POLICY = "policy"  # the actor name of decisions a node takes by its policy


class Role(StrEnum):
    """What a bearer token may do on the operator API."""

    ADMIN = "admin"  # every role (the token ``veil node init`` writes)
    OPERATOR = "operator"  # datasets, submit, cancel, outputs
    APPROVER = "approver"  # approve / reject
    AUDITOR = "auditor"  # read-only: jobs and events, never data


class JobState(StrEnum):
    """A job's life: proposed -> approved -> running -> one of the final states."""

    PROPOSED = "proposed"
    APPROVED = "approved"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """No more changes after this state."""
        return self in (self.SUCCEEDED, self.FAILED, self.REJECTED, self.CANCELLED)


class VoteState(StrEnum):
    """One party's answer to a proposal."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Dataset:
    """A registered table: jobs name it, never its path."""

    name: str
    path: str  # the node's own copy, named by its content hash
    format: str  # csv | parquet
    id_col: str
    label_col: str | None
    columns: tuple[str, ...]
    dtypes: tuple[str, ...]
    rows: int
    sha256: str
    created: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        """What an operator sees (no path)."""
        d = asdict(self)
        d.pop("path")
        d["columns"], d["dtypes"] = list(self.columns), list(self.dtypes)
        return d


@dataclass(frozen=True)
class Job:
    """A cross-node job as this node knows it."""

    id: str
    name: str
    initiator: str
    sha256: str
    text: str  # the job file (YAML), exactly as proposed
    parties: tuple[str, ...]
    state: JobState = JobState.PROPOSED
    error: str | None = None
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Vote:
    """A party's vote on one job: the hash it approved and what it tells the others."""

    job_id: str
    party: str
    state: VoteState
    sha256: str
    reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # id/label column names
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class StepState:
    """Progress of one step of a job on this node."""

    job_id: str
    index: int
    name: str
    state: str = "pending"  # pending | running | ok | failed
    progress: float = 0.0
    seconds: float = 0.0
    bytes: int = 0


@dataclass(frozen=True)
class Artifact:
    """An output file of a job on this node, referenced by its content hash."""

    job_id: str
    name: str
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Event:
    """One state change: what happened, to which job, who did it."""

    kind: str
    job_id: str | None = None
    actor: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
