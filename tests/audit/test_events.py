"""The audit vocabulary and canonical JSON: what may and may not enter the log."""

from __future__ import annotations

import pytest

from tests.audit.conftest import h
from veil.audit import Event, EventKind
from veil.audit.canonical import canonical_json, is_canonical
from veil.audit.events import SCHEMAS
from veil.errors import ConfigError


def test_canonical_json_is_rfc8785_for_our_types() -> None:
    assert canonical_json({"b": 1, "a": [True, None, "x"]}) == b'{"a":[true,null,"x"],"b":1}'
    # RFC 8785 3.2.2.2: only ", \\ and control characters are escaped; the rest is UTF-8
    assert canonical_json('é\n\x1f"\\/') == '"é\\n\\u001f\\"\\\\/"'.encode()
    # keys sort by UTF-16 code units: U+1F600 (surrogates D83D..) sorts before U+FB01
    assert canonical_json({"\ufb01": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\ufb01":1}'.encode()
    assert is_canonical(b'{"a":1}') and not is_canonical(b'{"a": 1}')
    assert not is_canonical(b'{"b":1,"a":2}')


@pytest.mark.parametrize("bad", [1.5, float("nan"), 2**53, {1: "x"}, b"raw", {"a": {1.0}}])
def test_canonical_json_refuses_ambiguous_values(bad: object) -> None:
    with pytest.raises(ConfigError):
        canonical_json({"v": bad})


def test_every_kind_has_a_schema() -> None:
    assert set(SCHEMAS) == set(EventKind)


def test_valid_event() -> None:
    ev = Event(
        EventKind.DATASET_REGISTERED,
        "user:alice",
        {"dataset": "loans", "schema_hash": h("s"), "rows": 10},
    )
    rec = ev.record(4, "2026-01-01T00:00:00.000000Z")
    assert rec["seq"] == 4 and rec["kind"] == "dataset.registered" and rec["job"] is None


@pytest.mark.parametrize(
    ("kind", "payload", "field"),
    [
        (
            EventKind.DATASET_ACCESSED,
            {"dataset": "loans", "columns": ["a"], "rows": 5, "ids": ["alice", "bob"]},
            "payload.ids",
        ),  # not in schema
        (EventKind.DATASET_ACCESSED, {"dataset": "loans", "columns": ["a"]}, "payload.rows"),
        (
            EventKind.DATASET_ACCESSED,
            {"dataset": "loans", "columns": ["a"], "rows": 1.0},
            "payload.rows",
        ),
        (
            EventKind.DATASET_ACCESSED,
            {"dataset": "loans", "columns": ["a"], "rows": True},
            "payload.rows",
        ),
        (
            EventKind.DATASET_ACCESSED,
            {"dataset": "loans", "columns": "a", "rows": 1},
            "payload.columns",
        ),
        (
            EventKind.JOB_PROPOSED,
            {"job_hash": "not-a-hash", "initiator": "bank"},
            "payload.job_hash",
        ),
        (EventKind.VOTE, {"voter": "telco", "decision": "maybe"}, "payload.decision"),
        (
            EventKind.BYTES_EXCHANGED,
            {"step": "s", "peer": "p", "sent": -1, "received": 0},
            "payload.sent",
        ),
        (EventKind.AUTH_FAILED, {"client": "x", "reason": "a" * 301}, "payload.reason"),
        (EventKind.STEP_ENDED, {"step": "a b", "status": "ok"}, "payload.step"),
    ],
)
def test_payloads_outside_the_schema_are_refused(
    kind: EventKind, payload: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError) as e:
        Event(kind, "node:bank", payload)
    assert e.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"actor": "alice"}, "actor"),
        ({"actor": "admin:root"}, "actor"),
        ({"job": "job 1"}, "job"),
        ({"time": "yesterday"}, "time"),
        ({"kind": "job.deleted"}, "kind"),
    ],
)
def test_envelope_is_checked(kwargs: dict[str, str], field: str) -> None:
    base: dict[str, object] = {
        "kind": EventKind.JOB_FINISHED,
        "actor": "node:bank",
        "payload": {"status": "ok"},
    }
    with pytest.raises(ConfigError) as e:
        Event(**{**base, **kwargs})  # type: ignore[arg-type]
    assert e.value.field == field


def test_fast_encoder_equals_canonical_json() -> None:
    from tests.audit.conftest import job_events
    from veil.audit.canonical import canonical_record

    for i, ev in enumerate(job_events("jöb-ü".replace("ö", "o").replace("ü", "u"))):
        rec = ev.record(i, "2026-01-01T00:00:00.000000Z")
        assert canonical_record(rec) == canonical_json(rec)
    ev = Event(
        EventKind.AUTH_FAILED, "peer:x", {"client": "x", "reason": 'bad cert \u00e9\u4e2d "q"'}
    )
    rec = ev.record(0, "2026-01-01T00:00:00.000000Z")
    assert canonical_record(rec) == canonical_json(rec)
