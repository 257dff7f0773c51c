"""The audit vocabulary: which events a node records and what each may carry.

Every payload is checked against its kind's schema, and anything not in the schema
is refused, so no raw data, record ids, feature values or secrets can slip into the
log: payloads hold names, counts, statuses and SHA-256 hashes only. Free text is
limited to short reasons, and names to a restricted alphabet.

Actors are ``user:NAME``, ``role:NAME``, ``peer:NAME`` or ``node:NAME``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NoReturn

from veil.errors import ConfigError


class EventKind(StrEnum):
    """What happened. The value is what the log entry stores."""

    JOB_PROPOSED = "job.proposed"
    VOTE = "job.vote"
    JOB_STARTED = "job.started"
    JOB_FINISHED = "job.finished"
    JOB_CANCELLED = "job.cancelled"
    JOB_FAILED = "job.failed"
    DATASET_REGISTERED = "dataset.registered"
    DATASET_CHANGED = "dataset.changed"
    DATASET_ACCESSED = "dataset.accessed"
    STEP_STARTED = "step.started"
    STEP_ENDED = "step.ended"
    BYTES_EXCHANGED = "step.bytes"
    OUTPUT_RELEASED = "output.released"
    AUTH_FAILED = "auth.failed"
    CERT_CHANGED = "cert.changed"
    POLICY_CHANGED = "policy.changed"
    HEAD_WITNESSED = "head.witnessed"


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,127}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_HEX_RE = re.compile(r"^(?:[0-9a-f]{2}){1,512}$")
_ACTOR_RE = re.compile(r"^(user|role|peer|node):[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
_TIME_RE = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}Z$"
)
_TEXT_MAX = 300
_CERT_MAX = 8192
MAX_COLUMNS = 10_000

Check = Callable[[object, str], None]


def _fail(where: str, problem: str, fix: str = "") -> NoReturn:
    raise ConfigError(where, problem, fix)


def name(v: object, where: str) -> None:
    """An identifier: dataset, step, party, rule, column name."""
    if not isinstance(v, str) or not _NAME_RE.match(v):
        _fail(where, f"{v!r} is not a name", "1-128 of A-Z a-z 0-9 _ . : @ / + -")


def hex64(v: object, where: str) -> None:
    """A SHA-256 digest, lowercase hex."""
    if not isinstance(v, str) or not _HEX64_RE.match(v):
        _fail(where, f"{v!r} is not a SHA-256 hex digest", "pass hashlib.sha256(...).hexdigest()")


def hexbytes(v: object, where: str) -> None:
    """Short binary data (a signature), lowercase hex."""
    if not isinstance(v, str) or not _HEX_RE.match(v):
        _fail(where, "is not lowercase hex of at most 512 bytes")


def count(v: object, where: str) -> None:
    """A non-negative integer (rows, bytes, tree size)."""
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**53:
        _fail(where, f"{v!r} is not a non-negative integer count")


def text(v: object, where: str) -> None:
    """A short human-readable reason; never data."""
    if not isinstance(v, str) or not v or len(v) > _TEXT_MAX or not v.isprintable():
        _fail(where, f"must be 1-{_TEXT_MAX} printable characters", "summarise; log no data")


def timestamp(v: object, where: str) -> None:
    """An RFC 3339 UTC time as this module writes it."""
    if not isinstance(v, str) or not _TIME_RE.match(v):
        _fail(where, f"{v!r} is not an RFC 3339 UTC time", "e.g. 2026-01-01T00:00:00.000000Z")


def cert_pem(v: object, where: str) -> None:
    """A PEM certificate (public)."""
    if (
        not isinstance(v, str)
        or len(v) > _CERT_MAX
        or not v.startswith("-----BEGIN CERTIFICATE-----")
    ):
        _fail(where, "is not a PEM certificate")


def one_of(*values: str) -> Check:
    def check(v: object, where: str) -> None:
        if v not in values:
            _fail(where, f"{v!r} is not one of {list(values)}")

    return check


def names(v: object, where: str) -> None:
    if not isinstance(v, list) or not v or len(v) > MAX_COLUMNS:
        _fail(where, f"must be a non-empty list of at most {MAX_COLUMNS} names")
    for i, x in enumerate(v):
        name(x, f"{where}[{i}]")


@dataclass(frozen=True)
class Field:
    check: Check
    required: bool = True


_STATUS = one_of("ok", "failed", "cancelled")
_HEAD: dict[str, Field] = {
    "node": Field(name),
    "size": Field(count),
    "root": Field(hex64),
    "time": Field(timestamp),
    "signature": Field(hexbytes),
    "cert": Field(cert_pem),
}

SCHEMAS: dict[EventKind, dict[str, Field]] = {
    EventKind.JOB_PROPOSED: {"job_hash": Field(hex64), "initiator": Field(name)},
    EventKind.VOTE: {
        "voter": Field(name),
        "decision": Field(one_of("approve", "reject")),
        "rule": Field(name, required=False),
        "approver": Field(name, required=False),
    },
    EventKind.JOB_STARTED: {"job_hash": Field(hex64), "parties": Field(names)},
    EventKind.JOB_FINISHED: {"status": Field(_STATUS)},
    EventKind.JOB_CANCELLED: {"by": Field(name), "reason": Field(text, required=False)},
    EventKind.JOB_FAILED: {"error": Field(name), "reason": Field(text, required=False)},
    EventKind.DATASET_REGISTERED: {
        "dataset": Field(name),
        "schema_hash": Field(hex64),
        "rows": Field(count),
    },
    EventKind.DATASET_CHANGED: {
        "dataset": Field(name),
        "schema_hash": Field(hex64),
        "rows": Field(count),
    },
    EventKind.DATASET_ACCESSED: {
        "dataset": Field(name),
        "columns": Field(names),
        "rows": Field(count),
        "step": Field(name, required=False),
    },
    EventKind.STEP_STARTED: {"step": Field(name), "protocol": Field(name, required=False)},
    EventKind.STEP_ENDED: {"step": Field(name), "status": Field(_STATUS)},
    EventKind.BYTES_EXCHANGED: {
        "step": Field(name),
        "peer": Field(name),
        "sent": Field(count),
        "received": Field(count),
    },
    EventKind.OUTPUT_RELEASED: {
        "recipient": Field(name),
        "artifact_hash": Field(hex64),
        "artifact": Field(name, required=False),
    },
    EventKind.AUTH_FAILED: {"client": Field(name), "reason": Field(text)},
    EventKind.CERT_CHANGED: {
        "subject": Field(name),
        "fingerprint": Field(hex64),
        "change": Field(one_of("issued", "installed", "revoked", "expired")),
    },
    EventKind.POLICY_CHANGED: {"policy_hash": Field(hex64), "summary": Field(text)},
    EventKind.HEAD_WITNESSED: _HEAD,
}


def format_time(t: dt.datetime) -> str:
    """RFC 3339 UTC with microseconds and a ``Z``: one fixed width, so strings sort as times."""
    if t.tzinfo is None:
        raise ConfigError("time", "is a naive datetime", "pass an aware datetime (UTC)")
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str) -> dt.datetime:
    """Inverse of :func:`format_time`; ValueError if ``s`` is not in that form."""
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def now() -> str:
    return format_time(dt.datetime.now(dt.UTC))


def check_payload(kind: EventKind, payload: object, where: str = "payload") -> None:
    """Raise ConfigError unless ``payload`` is exactly what ``kind``'s schema allows."""
    schema = SCHEMAS[kind]
    if not isinstance(payload, Mapping):
        _fail(where, f"must be a mapping, not {type(payload).__name__}")
    extra = sorted(set(payload) - set(schema))
    if extra:
        _fail(f"{where}.{extra[0]}", f"is not a field of {kind.value}", f"allowed: {list(schema)}")
    for key, f in schema.items():
        if key not in payload:
            if f.required:
                _fail(f"{where}.{key}", f"is required by {kind.value}")
            continue
        f.check(payload[key], f"{where}.{key}")


@dataclass(frozen=True)
class Event:
    """One thing the node records. Validated on construction; ``time`` defaults to append time."""

    kind: EventKind
    actor: str
    payload: Mapping[str, object] = field(default_factory=dict)
    job: str | None = None
    time: str | None = None

    def __post_init__(self) -> None:
        try:
            kind = EventKind(self.kind)
        except ValueError:
            _fail("kind", f"{self.kind!r} is not an audit event kind", f"use {list(EventKind)}")
        object.__setattr__(self, "kind", kind)
        if not isinstance(self.actor, str) or not _ACTOR_RE.match(self.actor):
            _fail(
                "actor", f"{self.actor!r} is not an actor", "use user:, role:, peer: or node:NAME"
            )
        if self.job is not None:
            name(self.job, "job")
        if self.time is not None:
            timestamp(self.time, "time")
        check_payload(kind, self.payload)
        object.__setattr__(self, "payload", dict(self.payload))

    def record(self, seq: int, time: str) -> dict[str, object]:
        """The entry as stored: this event at position ``seq`` (0-based leaf index)."""
        return {
            "seq": seq,
            "time": self.time or time,
            "actor": self.actor,
            "job": self.job,
            "kind": self.kind.value,
            "payload": dict(self.payload),
        }


def event_of_record(record: object) -> Event:
    """Rebuild and re-validate the event of a stored entry; ConfigError if it is not one."""
    if not isinstance(record, Mapping) or set(record) != {
        "seq",
        "time",
        "actor",
        "job",
        "kind",
        "payload",
    }:
        _fail("entry", "does not have exactly the fields seq, time, actor, job, kind, payload")
    count(record["seq"], "entry.seq")
    return Event(
        kind=record["kind"],
        actor=record["actor"],
        payload=record["payload"],
        job=record["job"],
        time=record["time"],
    )
