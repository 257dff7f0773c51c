"""In-memory transport: parties are threads of one process. Same semantics as gRPC
(keys, out-of-order arrival, timeouts, aborts), used by fast tests."""

from __future__ import annotations

from collections.abc import Callable

from veil.errors import PeerAborted
from veil.net.transport import Mailbox, TrafficStats, Transport, abort_payload, describe_abort


class MemoryHub:
    """The shared medium: one mailbox per rank. ``tap`` sees every frame (for tests)."""

    def __init__(self, n_parties: int, tap: Callable[[int, int, str, bytes], None] | None = None):
        self.mailboxes = [Mailbox() for _ in range(n_parties)]
        self.tap = tap

    def transport(self, rank: int) -> MemoryTransport:
        return MemoryTransport(self, rank)


class MemoryTransport(Transport):
    """One party's end of a :class:`MemoryHub`."""

    def __init__(self, hub: MemoryHub, rank: int) -> None:
        self.hub = hub
        self.rank = rank
        self.stats = TrafficStats()
        self.mailbox = hub.mailboxes[rank]

    def send(self, dst: int, key: str, payload: bytes) -> None:
        failed = self.mailbox.aborted(dst)
        if failed is not None:  # as over gRPC: nothing more goes to a party that failed
            raise PeerAborted(describe_abort(f"rank {dst}", *failed))
        if self.hub.tap is not None:
            self.hub.tap(self.rank, dst, key, payload)
        self.stats.sent(dst, len(payload))
        self.hub.mailboxes[dst].put(key, payload)

    def recv(self, src: int, key: str, timeout: float, peer_name: str = "") -> bytes:
        data = self.mailbox.take(key, src, timeout, peer_name)
        self.stats.received(src, len(data))
        return data

    def abort(self, reason: str, *, step: str = "", patience: float = 1.0) -> None:
        text = abort_payload(reason, step).decode("utf-8")
        for r, box in enumerate(self.hub.mailboxes):
            if r != self.rank:
                box.abort(self.rank, text)
