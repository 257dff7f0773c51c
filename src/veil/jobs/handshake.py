"""What a ``veil run`` worker is told, and the messages workers exchange themselves.

The parent hands each worker a :class:`WorkerConfig` (a JSON file in the run's
private staging folder). Before the first step the workers of a job exchange
:class:`JobSummary` (``Tag.JOB``): what each party's job file says, so two sites
running different job files stop at once; after the last step each sends
``Tag.DONE``. Every peer message is checked field by field: a malformed one raises
:class:`veil.errors.ProtocolError` naming the tag and the field.

What crosses the wire here: the job's name, its party names and its steps with
their parameters. No data path, no column name, no row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from veil.errors import ConfigError, ProtocolError

if TYPE_CHECKING:
    from veil.jobs.spec import JobSpec
    from veil.net.session import Session


class Tag(StrEnum):
    """Messages the workers exchange themselves (all else belongs to steps)."""

    JOB = "job"  # JobSummary: what this party's job file says, at the start
    DONE = "done"  # True: this party ran every step, at the end


@dataclass(frozen=True)
class WorkerConfig:
    """What the parent tells one worker; written as JSON to a file it passes.

    ``staging`` is the run's private folder (outputs, throw-away keys, logs): a
    worker whose parent dies removes it before exiting. ``tell_peers``: whether the
    worker must send an abort to its peers when the parent stops it (false when
    every peer runs here and is stopped too). ``route``: the job id under which
    the nodes relay the traffic (:class:`veil.net.grpc_config.GrpcConfig` ``job``).
    """

    job: str
    party: str
    out_dir: str
    names: tuple[str, ...]
    addresses: tuple[str, ...]
    ca_cert: str
    cert: str
    key: str
    timeout: float
    listen: str | None = None
    staging: str | None = None
    tell_peers: bool = True
    route: str | None = None
    engine: str | None = None  # this party's engine URL (veil.jobs.engines); None: local

    def to_json(self) -> str:
        return json.dumps(self.__dict__ | {"names": list(self.names)})

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        d = json.loads(text)
        d["names"], d["addresses"] = tuple(d["names"]), tuple(d["addresses"])
        return cls(**d)


@dataclass(frozen=True)
class JobSummary:
    """What every party's job file must agree on (data paths and columns may differ)."""

    name: str
    parties: tuple[str, ...]
    steps: tuple[tuple[str, dict[str, object]], ...]

    @classmethod
    def of(cls, spec: JobSpec) -> JobSummary:
        steps = tuple((s.name, json.loads(json.dumps(dict(s.params)))) for s in spec.steps)
        return cls(spec.name, tuple(sorted(spec.party_names)), steps)

    def to_wire(self) -> dict[str, object]:
        return {
            "name": self.name,
            "parties": list(self.parties),
            "steps": [[n, p] for n, p in self.steps],
        }

    @classmethod
    def from_wire(cls, value: Any, peer: str) -> JobSummary:
        """Parse ``peer``'s message; ProtocolError naming the tag and field if malformed."""

        def bad(field: str, problem: str) -> ProtocolError:
            return ProtocolError(f"message '{Tag.JOB}' from {peer}: field '{field}' {problem}")

        if not isinstance(value, dict):
            raise bad("(message)", f"must be a mapping, got {type(value).__name__}")
        name = value.get("name")
        if not isinstance(name, str):
            raise bad("name", "must be a string")
        parties = value.get("parties")
        if not isinstance(parties, list) or not all(isinstance(p, str) for p in parties):
            raise bad("parties", "must be a list of party names")
        raw_steps = value.get("steps")
        if not isinstance(raw_steps, list):
            raise bad("steps", "must be a list")
        steps = []
        for i, entry in enumerate(raw_steps):
            ok = isinstance(entry, list) and len(entry) == 2
            if not ok or not isinstance(entry[0], str) or not isinstance(entry[1], dict):
                raise bad(f"steps[{i}]", "must be [step name, parameters]")
            steps.append((entry[0], entry[1]))
        return cls(name, tuple(parties), tuple(steps))


def parse_done(value: Any, peer: str) -> None:
    """``Tag.DONE`` carries ``True``; anything else is a ProtocolError."""
    if value is not True:
        raise ProtocolError(f"message '{Tag.DONE}' from {peer}: field '(message)' must be true")


def check_same_job(session: Session, spec: JobSpec) -> None:
    """Exchange job summaries with every peer; stop with a clear error if they differ."""
    mine = JobSummary.of(spec)
    for peer in session.peers():
        session.send(peer, Tag.JOB, mine.to_wire())
    for peer in session.peers():
        theirs = JobSummary.from_wire(session.recv(peer, Tag.JOB), peer)
        if theirs == mine:
            continue
        field, problem = "job", "differs"
        if theirs.name != mine.name:
            field, problem = "name", f"'{peer}' runs job {theirs.name!r}"
        elif theirs.parties != mine.parties:
            field, problem = "parties", f"'{peer}' lists parties {list(theirs.parties)}"
        else:
            for i in range(max(len(theirs.steps), len(mine.steps))):
                a = list(mine.steps[i]) if i < len(mine.steps) else None
                b = list(theirs.steps[i]) if i < len(theirs.steps) else None
                if a != b:
                    field, problem = f"steps[{i}]", f"ours is {a}, '{peer}' has {b}"
                    break
        raise ConfigError(
            field,
            f"this job file differs from party '{peer}'s: {problem}",
            "every party must run the same job file (only data paths and columns may differ)",
        )


def say_done(session: Session) -> None:
    """Tell every peer this party ran every step; wait until each says the same."""
    for peer in session.peers():
        session.send(peer, Tag.DONE, True)
    for peer in session.peers():
        parse_done(session.recv(peer, Tag.DONE), peer)
