"""yacl-compatible channels over a raw :class:`~veil.net.transport.Transport`.

A channel numbers its messages per direction, from 1, in keys
``{id}:P2P-{n}:{src}->{dst}``; :meth:`IcChannel.spawn` opens the sub-channel
``{id}-{k}`` (k from 0) with fresh counters, as yacl's ``Context::Spawn`` does. The link
also has two control messages outside any channel: the mesh connect at the start and
the ``FIN`` exchange at the end.
"""

from __future__ import annotations

import threading
import time

from veil.errors import PeerTimeout
from veil.net.transport import Transport
from veil.protocols.interconnect.vocab import (
    CONNECT_PREFIX,
    FIN_KEY,
    FIN_VALUE,
    SEQ_SEP,
    channel_key,
)

_POLL = 0.05


class IcChannel:
    """One yacl link context: a key prefix and per-direction message counters."""

    def __init__(self, transport: Transport, channel_id: str, timeout: float = 120.0) -> None:
        self.transport = transport
        self.id = channel_id
        self.timeout = timeout
        self._sent: dict[int, int] = {}
        self._recvd: dict[int, int] = {}
        self._spawned = 0
        self._lock = threading.Lock()

    @property
    def rank(self) -> int:
        return self.transport.rank

    def next_send_key(self, dst: int) -> str:
        with self._lock:
            n = self._sent[dst] = self._sent.get(dst, 0) + 1
        return channel_key(self.id, n, self.rank, dst)

    def next_recv_key(self, src: int) -> str:
        with self._lock:
            n = self._recvd[src] = self._recvd.get(src, 0) + 1
        return channel_key(self.id, n, src, self.rank)

    def send(self, dst: int, value: bytes) -> None:
        """Send ``value`` to rank ``dst`` under this channel's next key for that direction."""
        self.transport.send(dst, self.next_send_key(dst), value)

    def recv(self, src: int, timeout: float | None = None) -> bytes:
        """The next message from rank ``src`` on this channel, whenever it arrives."""
        key = self.next_recv_key(src)
        return self.transport.recv(src, key, timeout or self.timeout, f"rank {src}")

    def spawn(self) -> IcChannel:
        """A sub-channel ``{id}-{k}`` with its own counters."""
        with self._lock:
            k = self._spawned
            self._spawned += 1
        return IcChannel(self.transport, f"{self.id}-{k}", self.timeout)


def _recv_any(t: Transport, src: int, keys: list[str], timeout: float) -> bytes:
    """Wait for whichever of ``keys`` rank ``src`` sends first."""
    deadline = time.monotonic() + timeout
    while True:
        for k in keys:
            try:
                return t.recv(src, k, _POLL, f"rank {src}")
            except PeerTimeout:
                pass
        if time.monotonic() >= deadline:
            raise PeerTimeout(
                f"rank {src} did not connect within {timeout:.0f} s: check that it is running "
                "and that its --peer address points at this party"
            )


def connect_mesh(t: Transport, peers: list[int], timeout: float) -> None:
    """yacl's ConnectToMesh: tell every peer we are up and wait until each says the same.

    We send yacl's own form ``connect_{rank}\\x01\\x020`` and accept it or the plain
    ``connect_{rank}``.
    """
    for p in peers:
        t.send(p, f"{CONNECT_PREFIX}{t.rank}{SEQ_SEP}0", b"")
    for p in peers:
        plain = f"{CONNECT_PREFIX}{p}"
        _recv_any(t, p, [plain + SEQ_SEP + "0", plain], timeout)


def send_fin(t: Transport, peers: list[int]) -> None:
    """Announce the end of the link (each side must, or a yacl peer waits forever)."""
    for p in peers:
        t.send(p, FIN_KEY, FIN_VALUE)


def wait_fin(t: Transport, peers: list[int], timeout: float) -> bool:
    """Wait for every peer's FIN; False if one did not come within ``timeout``."""
    ok = True
    for p in peers:
        try:
            t.recv(p, FIN_KEY, timeout, f"rank {p}")
        except PeerTimeout:
            ok = False
    return ok
