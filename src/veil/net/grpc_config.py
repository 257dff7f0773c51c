"""Configuration of the mutual-TLS gRPC transport: who is where, with which certificates."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from veil.errors import ConfigError
from veil.net.certs import TlsFiles, check_party_name


@dataclass(frozen=True)
class GrpcConfig:
    """Where the parties are and how this one talks to them.

    ``names[r]`` is rank r's party name (and certificate name); ``addresses[r]`` is
    its ``host:port``; we listen on ``listen`` or ``addresses[rank]``.
    """

    rank: int
    names: Sequence[str]
    addresses: Sequence[str]
    tls: TlsFiles | None
    insecure: bool = False
    chunk_size: int = 1 << 20
    connect_timeout: float = 60.0
    listen: str | None = None

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        n = len(self.names)
        if n < 2:
            raise ConfigError("names", "a transport needs at least two parties")
        if len(self.addresses) != n:
            raise ConfigError(
                "addresses", f"{len(self.addresses)} addresses for {n} parties", "give one each"
            )
        if len(set(self.names)) != n:
            raise ConfigError("names", f"party names must be unique, got {list(self.names)}")
        for i, name in enumerate(self.names):
            check_party_name(name, f"names[{i}]")
        if not 0 <= self.rank < n:
            raise ConfigError("rank", f"{self.rank} is not in 0..{n - 1}")
        spots = [(f"addresses[{i}]", a) for i, a in enumerate(self.addresses)]
        for field, a in [*spots, *([("listen", self.listen)] if self.listen else [])]:
            m = re.match(r"^\S+:(\d{1,5})$", str(a))
            if not m or not 0 < int(m.group(1)) < 65536:
                raise ConfigError(field, f"'{a}' is not host:port", "e.g. 10.0.0.5:9443")
        if self.tls is not None and self.insecure:
            raise ConfigError("insecure", "set together with tls", "drop one of the two")
        if self.tls is None and not self.insecure:
            raise ConfigError(
                "tls", "no certificates given", "pass TlsFiles (see 'veil ca'), or insecure=True"
            )
        if self.tls is not None:
            for f in ("ca_cert", "cert", "key"):
                p = Path(getattr(self.tls, f))
                if not p.is_file():
                    raise ConfigError(f"tls.{f}", f"{p} does not exist", "see 'veil ca issue'")
        if self.chunk_size < 1024:
            raise ConfigError("chunk_size", f"{self.chunk_size} is too small", "use >= 1024")
        if self.connect_timeout <= 0:
            raise ConfigError("connect_timeout", "must be positive")
