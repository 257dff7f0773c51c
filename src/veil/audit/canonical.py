"""Canonical JSON for audit entries (RFC 8785, JSON Canonicalization Scheme).

An entry is hashed as bytes, so the same event must always give the same bytes:
object keys sorted by their UTF-16 code units, no whitespace, strings escaped the
RFC 8785 way (only ``"``, ``\\`` and control characters; ``\\b \\t \\n \\f \\r`` short
forms, others ``\\u00xx``), UTF-8 output. Floats are refused outright rather than
encoded: every quantity in an audit entry is a count or an identifier, and a float's
text form is where canonicalisers disagree. Integers must fit I-JSON's exact range
(|n| < 2**53) so any JSON reader gets the same number back.
"""

from __future__ import annotations

import json
from typing import Any

from veil.errors import ConfigError

MAX_SAFE_INT = 2**53 - 1

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _normalise(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(where, "contains a lone surrogate", "pass valid text") from None
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise ConfigError(
                where, f"integer {value} is outside I-JSON's exact range", "use a string"
            )
        return int(value)
    if isinstance(value, float):
        raise ConfigError(
            where, "floats are not allowed in audit entries", "use an integer count or a string"
        )
    if isinstance(value, list | tuple):
        return [_normalise(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise ConfigError(where, f"object key {k!r} is not a string", "use string keys")
        return {k: _normalise(value[k], f"{where}.{k}") for k in sorted(value, key=_utf16_key)}
    raise ConfigError(where, f"{type(value).__name__} cannot be put in an audit entry")


def canonical_json(value: Any, where: str = "entry") -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value``; ConfigError on floats and the like."""
    return _ENCODER.encode(_normalise(value, where)).encode("utf-8")


_FAST = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, sort_keys=True)


def canonical_record(record: dict[str, Any]) -> bytes:
    """Canonical bytes of a record already validated by :mod:`veil.audit.events`.

    Such a record has only ASCII keys (the envelope's and the schema's field names),
    whose code-point order equals RFC 8785's UTF-16 order, and no floats (the schemas
    admit none), so the standard encoder with sorted keys gives the RFC 8785 bytes at
    C speed. The tests compare it with :func:`canonical_json`.
    """
    return _FAST.encode(record).encode("utf-8")


def is_canonical(data: bytes) -> bool:
    """True when ``data`` parses as JSON and is exactly its own canonical form."""
    try:
        return canonical_json(json.loads(data.decode("utf-8"))) == data
    except (ValueError, ConfigError):
        return False
