"""Engine URLs: ``local`` or ``ray://HOST:PORT`` (a Ray cluster's client address).

The engine is chosen by each party for itself (``veil run --party P --engine URL``, or
the ``engine:`` entry of that party in the job file) and never by a partner.
"""

from __future__ import annotations

from dataclasses import dataclass

from veil.errors import ConfigError

LOCAL = "local"
RAY_SCHEME = "ray://"


@dataclass(frozen=True)
class EngineSpec:
    """A parsed engine URL: ``kind`` is ``local`` or ``ray``; ``address`` ``HOST:PORT``
    of a Ray cluster's client server (``ray start --head`` listens on 10001)."""

    kind: str
    address: str | None = None

    @property
    def url(self) -> str:
        """The URL this spec was parsed from (normalised)."""
        return LOCAL if self.address is None else RAY_SCHEME + self.address


def parse_engine(value: object, field: str = "engine") -> EngineSpec:
    """Parse ``local`` (or None) or ``ray://HOST:PORT``; anything else is a ConfigError."""
    fix = "use 'local' or 'ray://HOST:PORT' (a Ray cluster's client address)"
    if value is None:
        return EngineSpec(LOCAL)
    if not isinstance(value, str):
        raise ConfigError(field, f"must be a string, got {type(value).__name__}", fix)
    text = value.strip()
    if text == LOCAL:
        return EngineSpec(LOCAL)
    if not text.startswith(RAY_SCHEME):
        raise ConfigError(field, f"{value!r} is not an engine URL", fix)
    host, sep, port = text[len(RAY_SCHEME) :].rpartition(":")
    if not sep or not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(field, f"{value!r} has no valid HOST:PORT", fix)
    return EngineSpec("ray", f"{host}:{int(port)}")
