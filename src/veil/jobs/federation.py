"""The network pieces ``veil run`` needs, in one place: a throw-away CA, free
loopback ports, and a mutual-TLS gRPC transport for one worker.

They come from :mod:`veil.net.certs` and :mod:`veil.net.grpc_transport`, which
are being written on the gRPC branch; they are imported by name here until they
land on main, so this branch type-checks without them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, cast

from veil.net.transport import Transport


class TlsPaths(Protocol):
    """A party's TLS files (``veil.net.certs.TlsFiles`` has this shape)."""

    @property
    def ca_cert(self) -> Path: ...
    @property
    def cert(self) -> Path: ...
    @property
    def key(self) -> Path: ...


def throwaway_federation(parties: Sequence[str], workdir: Path) -> Mapping[str, TlsPaths]:
    """A fresh CA in ``workdir`` and one certificate per party, for one local run."""
    certs = importlib.import_module("veil.net.certs")
    return cast(Mapping[str, TlsPaths], certs.throwaway_federation(parties, workdir))


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    return int(importlib.import_module("veil.net.grpc_transport").free_port())


def connect(
    rank: int,
    names: Sequence[str],
    addresses: Sequence[str],
    tls: TlsPaths,
    timeout: float,
    *,
    listen: str | None = None,
) -> Transport:
    """Rank ``rank``'s mutual-TLS gRPC transport to the other parties."""
    certs = importlib.import_module("veil.net.certs")
    grpc = importlib.import_module("veil.net.grpc_transport")
    files = certs.TlsFiles(ca_cert=tls.ca_cert, cert=tls.cert, key=tls.key)
    cfg = grpc.GrpcConfig(
        rank=rank,
        names=tuple(names),
        addresses=tuple(addresses),
        tls=files,
        connect_timeout=timeout,
        listen=listen,
    )
    return cast(Transport, grpc.GrpcTransport(cfg))
