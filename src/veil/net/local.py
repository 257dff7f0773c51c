"""Run several parties' role functions side by side in one process (threads).

Used by tests and notebooks: the same role functions, over the in-memory
transport or over real mutual-TLS gRPC on loopback (``transport="grpc"``).
If one party raises, it aborts the others, so nothing hangs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from veil.errors import ConfigError
from veil.net.memory import MemoryHub
from veil.net.session import Session
from veil.net.transport import Transport

T = TypeVar("T")
Tap = Callable[[int, int, str, bytes], None]
TRANSPORTS = ("memory", "grpc")


@contextmanager
def local_transports(
    kind: str, parties: Sequence[str], tap: Tap | None = None
) -> Iterator[list[Transport]]:
    """One connected transport per party, closed on exit.

    ``tap(src, dst, key, payload)`` sees every frame sent (memory and grpc alike).
    """
    if kind == "memory":
        hub = MemoryHub(len(parties), tap=tap)
        yield [hub.transport(r) for r in range(len(parties))]
    elif kind == "grpc":
        from veil.net.grpc_transport import loopback_transports

        with loopback_transports(parties, tap=tap) as ts:
            yield ts
    else:
        raise ConfigError("transport", f"unknown transport '{kind}'", f"use one of {TRANSPORTS}")


def run_parties(
    targets: Mapping[str, Callable[[Session], Any]],
    *,
    parties: Sequence[str] | None = None,
    roles: Mapping[str, str] | None = None,
    transport: str = "memory",
    timeout: float = 60.0,
    tap: Tap | None = None,
) -> dict[str, Any]:
    """Run ``targets[party](session)`` for every party concurrently; return their results.

    Re-raises the first party's exception (others see :class:`PeerAborted`).
    """
    names = list(parties or targets)
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}
    with local_transports(transport, names, tap) as transports:

        def work(name: str, t: Transport) -> None:
            s = Session(t, names, name, roles, timeout=timeout)
            try:
                results[name] = targets[name](s)
            except BaseException as e:
                errors[name] = e
                t.abort(f"{type(e).__name__}: {e}")

        threads = [
            threading.Thread(target=work, args=(n, transports[i]), daemon=True, name=f"party-{n}")
            for i, n in enumerate(names)
            if n in targets
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    if errors:
        # Prefer the root cause over the peers' "aborted" echoes.
        from veil.errors import PeerAborted

        roots = [e for e in errors.values() if not isinstance(e, PeerAborted)]
        raise (roots or list(errors.values()))[0]
    return results
