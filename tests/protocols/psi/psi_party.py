"""One PSI party in its own OS process, for the multi-process gRPC test (spawned, not
collected by pytest)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from veil.net.certs import TlsFiles
from veil.net.grpc_transport import GrpcConfig, GrpcTransport
from veil.net.session import Session
from veil.protocols.psi import PsiParams, run_psi


def psi_party(
    rank: int,
    *,
    names: Sequence[str],
    addrs: Sequence[str],
    tls: TlsFiles,
    ids: Sequence[str],
    result_to: tuple[str, ...],
    out: str,
) -> None:
    """Run PSI as ``names[rank]`` over mutual-TLS gRPC; write the result as JSON to ``out``."""
    t = GrpcTransport(GrpcConfig(rank=rank, names=names, addresses=addrs, tls=tls))
    try:
        res = run_psi(Session(t, names, names[rank], timeout=60), ids, PsiParams(result_to))
    finally:
        t.close()
    indices = None if res.indices is None else res.indices.tolist()
    Path(out).write_text(json.dumps({"indices": indices, "size": res.size}))
