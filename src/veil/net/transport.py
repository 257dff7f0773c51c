"""The transport interface every protocol runs over, and the receive mailbox.

A transport moves opaque byte strings between ranks under string keys; it knows
nothing of protocols. Keys follow the interconnection convention
``{channel}:P2P-{counter}:{src}->{dst}`` (built by :class:`veil.net.session.Session`).
Two implementations: :mod:`veil.net.memory` (threads, for tests) and
:mod:`veil.net.grpc_transport` (mutual-TLS gRPC, the interconnection wire).
"""

from __future__ import annotations

import copy
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from veil.errors import PeerAborted, PeerTimeout, VeilError

ABORT_KEY_PREFIX = "veil:abort:"


@dataclass
class PeerTraffic:
    """Bytes and messages exchanged with one peer."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0


@dataclass
class TrafficStats:
    """Per-peer traffic counters of one party; thread-safe."""

    peers: dict[int, PeerTraffic] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def sent(self, dst: int, nbytes: int) -> None:
        with self._lock:
            p = self.peers.setdefault(dst, PeerTraffic())
            p.bytes_sent += nbytes
            p.messages_sent += 1

    def received(self, src: int, nbytes: int) -> None:
        with self._lock:
            p = self.peers.setdefault(src, PeerTraffic())
            p.bytes_received += nbytes
            p.messages_received += 1

    def totals(self) -> PeerTraffic:
        """Sum over all peers."""
        with self._lock:
            t = PeerTraffic()
            for p in self.peers.values():
                t.bytes_sent += p.bytes_sent
                t.bytes_received += p.bytes_received
                t.messages_sent += p.messages_sent
                t.messages_received += p.messages_received
            return t


class Mailbox:
    """Messages that arrived, by key, until a receiver takes them.

    Arrival order does not matter: a receive waits for its key. A peer's abort
    wakes every waiter with :class:`PeerAborted` (or with the error given, e.g. the
    receiver's ProtocolError for a peer that broke its limits). ``on_take(key, size)``,
    if set, hears of every value taken (the gRPC receiver counts what each peer holds).
    """

    def __init__(self) -> None:
        self._items: dict[str, bytes] = {}
        self._cond = threading.Condition()
        self._aborted: dict[int, str | VeilError] = {}
        self.on_take: Callable[[str, int], None] | None = None

    def put(self, key: str, value: bytes) -> None:
        with self._cond:
            self._items[key] = value
            self._cond.notify_all()

    def abort(self, src: int, reason: str | VeilError) -> None:
        with self._cond:
            self._aborted[src] = reason
            self._cond.notify_all()

    def take(self, key: str, src: int, timeout: float, peer_name: str = "") -> bytes:
        """Wait up to ``timeout`` seconds for ``key``; raise PeerTimeout/PeerAborted."""
        deadline = time.monotonic() + timeout
        who = peer_name or f"rank {src}"
        with self._cond:
            while key not in self._items:
                if src in self._aborted:
                    why = self._aborted[src]
                    if isinstance(why, VeilError):
                        raise copy.copy(why)  # one per waiter (tracebacks differ)
                    raise PeerAborted(f"peer {who} failed: {why}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerTimeout(
                        f"no message '{key}' from peer {who} after {timeout:.0f} s: check that "
                        f"{who} is running, reachable, and running the same job and step"
                    )
                self._cond.wait(left)
            value = self._items.pop(key)
        if self.on_take is not None:
            self.on_take(key, len(value))
        return value


class Transport(ABC):
    """Moves bytes between ranks. ``rank`` is this party's index in the job's party list."""

    rank: int
    stats: TrafficStats

    @abstractmethod
    def send(self, dst: int, key: str, payload: bytes) -> None:
        """Deliver ``payload`` under ``key`` to rank ``dst`` (may return before it arrives)."""

    @abstractmethod
    def recv(self, src: int, key: str, timeout: float, peer_name: str = "") -> bytes:
        """Wait for the payload rank ``src`` sent under ``key``."""

    @abstractmethod
    def abort(self, reason: str) -> None:
        """Tell every peer, best effort, that this party failed (they stop waiting)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sockets and threads."""
