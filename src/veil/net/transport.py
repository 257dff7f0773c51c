"""The transport interface every protocol runs over, and the receive mailbox.

A transport moves opaque byte strings between ranks under string keys; it knows
nothing of protocols. Keys follow the interconnection convention
``{channel}:P2P-{counter}:{src}->{dst}`` (built by :class:`veil.net.session.Session`).
Two implementations: :mod:`veil.net.memory` (threads, for tests) and
:mod:`veil.net.grpc_transport` (mutual-TLS gRPC, the interconnection wire).

Besides values, the mailbox files three kinds of news about a peer, so a waiting
party never waits longer than it must:

- an abort (key ``veil:abort:{rank}``): the peer failed; its value says why and in
  which step. Every waiter on that peer raises :class:`PeerAborted` at once.
- a heartbeat (key ``veil:heartbeat:{rank}``, opt-in, see
  :meth:`veil.net.grpc_transport.GrpcTransport.start_heartbeats`): the peer is alive.
  A peer that heartbeated once and then falls silent for ``dead_after`` seconds is
  dead, not slow: its waiters raise :class:`veil.errors.NetworkError`. A slow peer
  keeps heartbeating and is waited for up to the receive timeout.
- gone: the sender side found the peer's address refusing connections.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from veil.errors import NetworkError, PeerAborted, PeerTimeout, VeilError

ABORT_KEY_PREFIX = "veil:abort:"
HEARTBEAT_KEY_PREFIX = "veil:heartbeat:"
DEAD_AFTER = 8.0  # seconds of heartbeat silence after which a peer is dead, not slow
_POLL = 0.25  # how often a waiter looks at heartbeats
_STEP_WORDS = {
    "start": "before the first step",
    "end": "after the last step",
    "data check": "in its data check",
}


def abort_payload(reason: str, step: str = "") -> bytes:
    """The value of an abort message: why this party stopped and in which step."""
    text = json.dumps({"reason": reason[:3000], "step": step[:200]})
    return text.encode("utf-8")


def parse_abort(text: str) -> tuple[str, str]:
    """``(reason, step)`` of an abort value; a plain-text value is all reason."""
    try:
        d = json.loads(text)
    except ValueError:
        return text, ""
    if isinstance(d, dict) and isinstance(d.get("reason"), str):
        step = d.get("step")
        return d["reason"], step if isinstance(step, str) else ""
    return text, ""


def describe_abort(who: str, reason: str, step: str) -> str:
    """``partner failed in step 2 'hetero_lr': REASON`` (the text a waiter raises)."""
    if not step:
        where = ""
    elif re.match(r"^\d+ ", step):
        where = f" in step {step}"
    else:
        where = f" {_STEP_WORDS.get(step, 'in ' + step)}"
    return f"{who} failed{where}: {reason}"


@dataclass(frozen=True)
class Wait:
    """Something this party is waiting for: ``what`` from rank ``peer`` since ``since``."""

    peer: int
    what: str  # "connecting" or "message"
    since: float  # time.monotonic()


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
    receiver's ProtocolError for a peer that broke its limits); a dead peer (see the
    module docstring) with :class:`NetworkError`. ``on_take(key, size)``, if set, hears
    of every value taken (the gRPC receiver counts what each peer holds).
    """

    def __init__(self, dead_after: float = DEAD_AFTER) -> None:
        self._items: dict[str, bytes] = {}
        self._cond = threading.Condition()
        self._aborted: dict[int, tuple[str, str] | VeilError] = {}  # rank -> (reason, step)
        self._gone: dict[int, str] = {}
        self._heard: dict[int, float] = {}  # rank -> time of its last heartbeat
        self._waits: dict[int, Wait] = {}  # id of a wait -> what it waits for
        self._next_wait = 0
        self.dead_after = dead_after
        self.on_take: Callable[[str, int], None] | None = None

    def put(self, key: str, value: bytes) -> None:
        if key.startswith(HEARTBEAT_KEY_PREFIX):
            rank = key[len(HEARTBEAT_KEY_PREFIX) :]
            if rank.isdigit():
                self.heartbeat(int(rank))
            return
        with self._cond:
            self._items[key] = value
            self._cond.notify_all()

    def abort(self, src: int, reason: str | VeilError) -> None:
        """Peer ``src`` failed; ``reason`` is an :func:`abort_payload` text, plain text, or
        the error its waiters raise. The first abort of a peer is kept (a later echo does
        not replace the cause)."""
        with self._cond:
            why = reason if isinstance(reason, VeilError) else parse_abort(reason)
            self._aborted.setdefault(src, why)
            self._cond.notify_all()

    def heartbeat(self, src: int) -> None:
        """Peer ``src`` is alive now."""
        with self._cond:
            self._heard[src] = time.monotonic()

    def gone(self, src: int, why: str) -> None:
        """Peer ``src`` is unreachable for good (its address refuses connections)."""
        with self._cond:
            self._gone.setdefault(src, why)
            self._cond.notify_all()

    def aborted(self, src: int) -> tuple[str, str] | None:
        """``(reason, step)`` if peer ``src`` aborted."""
        with self._cond:
            why = self._aborted.get(src)
        return (str(why), "") if isinstance(why, VeilError) else why

    def heard(self, src: int) -> float | None:
        """Seconds since peer ``src``'s last heartbeat (None: never heard)."""
        with self._cond:
            t = self._heard.get(src)
        return None if t is None else time.monotonic() - t

    def waiting(self) -> list[Wait]:
        """What this party waits for right now (oldest first)."""
        with self._cond:
            return sorted(self._waits.values(), key=lambda w: w.since)

    @contextmanager
    def waiting_for(self, src: int, what: str) -> Iterator[None]:
        """Mark a wait for rank ``src`` (shown by the live display) while in the block."""
        with self._cond:
            token = self._next_wait
            self._next_wait += 1
            self._waits[token] = Wait(src, what, time.monotonic())
        try:
            yield
        finally:
            with self._cond:
                del self._waits[token]

    def check_peer(self, src: int, who: str, since: float) -> None:
        """Raise if peer ``src`` aborted, is gone, or fell silent (call with the lock held
        or not; ``since`` is when the caller started waiting)."""
        with self._cond:
            if src in self._aborted:
                why = self._aborted[src]
                if isinstance(why, VeilError):
                    raise copy.copy(why)  # one per waiter (tracebacks differ)
                raise PeerAborted(describe_abort(who, *why))
            if src in self._gone:
                raise NetworkError(f"{who} is gone: {self._gone[src]}")
            heard = self._heard.get(src)
            if heard is not None:
                silent = time.monotonic() - max(heard, since)
                if silent > self.dead_after:
                    raise NetworkError(
                        f"{who} stopped responding: no heartbeat for {silent:.0f} s (its "
                        "process died, or the network between us is down)"
                    )

    def take(self, key: str, src: int, timeout: float, peer_name: str = "") -> bytes:
        """Wait up to ``timeout`` s for ``key``; raise PeerTimeout, PeerAborted or NetworkError."""
        start = time.monotonic()
        deadline = start + timeout
        who = peer_name or f"rank {src}"
        what = "connecting" if key.startswith("connect_") else "message"
        with self.waiting_for(src, what), self._cond:
            while key not in self._items:
                self.check_peer(src, who, start)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerTimeout(
                        f"no message '{key}' from peer {who} after {timeout:.0f} s: check that "
                        f"{who} is running, reachable, and running the same job and step"
                    )
                self._cond.wait(min(left, _POLL) if src in self._heard else left)
            value = self._items.pop(key)
        if self.on_take is not None:
            self.on_take(key, len(value))
        return value


class Transport(ABC):
    """Moves bytes between ranks. ``rank`` is this party's index in the job's party list;
    ``mailbox`` files what arrives for it."""

    rank: int
    stats: TrafficStats
    mailbox: Mailbox

    @abstractmethod
    def send(self, dst: int, key: str, payload: bytes) -> None:
        """Deliver ``payload`` under ``key`` to rank ``dst`` (may return before it arrives)."""

    @abstractmethod
    def recv(self, src: int, key: str, timeout: float, peer_name: str = "") -> bytes:
        """Wait for the payload rank ``src`` sent under ``key``."""

    @abstractmethod
    def abort(self, reason: str, *, step: str = "", patience: float = 1.0) -> None:
        """Tell every peer, best effort, that this party failed in ``step`` and why
        (they stop waiting); gives up on a peer after ``patience`` seconds."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sockets and threads."""
