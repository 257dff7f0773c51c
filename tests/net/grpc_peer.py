"""A party in its own OS process for the multi-process gRPC tests (spawned, not imported
by pytest as a test module)."""

from __future__ import annotations

import os
import time

from veil.net.grpc_transport import GrpcConfig, GrpcTransport
from veil.net.session import Session


def echo_party(cfg: GrpcConfig, die_after: int = -1) -> None:
    """Doubles every value rank 0 sends and sends it back, until it gets None;
    ``die_after`` messages in, exits without a word (to play a crashed peer)."""
    t = GrpcTransport(cfg)
    names = list(cfg.names)
    s = Session(t, names, names[cfg.rank], timeout=30)
    n = 0
    while True:
        v = s.recv(names[0], "ask")
        n += 1
        if n == die_after:  # let the Push reply go out, then crash mid-computation
            time.sleep(0.3)
            os._exit(3)
        if v is None:
            break
        s.send(names[0], "answer", v * 2)
    t.close()
