"""Mutual-TLS gRPC transport on the privacy-computing interconnection wire.

Every message is one ``org.interconnection.link.ReceiverService/Push`` call
(``PushRequest{sender_rank, key, value, trans_type, chunk_info}``, see
``proto/link.proto``), so a SecretFlow interconnection peer can talk to Veil.
Each party runs a server (:mod:`veil.net.grpc_receiver`) that files incoming values
in a :class:`Mailbox` by key; ``send`` pushes to the peer's server. Values over
``chunk_size`` go as several CHUNKED pushes sharing the key, reassembled by offset
in any order, so no frame is ever larger than one chunk.

Security: both ends present certificates signed by the federation CA. The client
pins the server's name to the expected party (``ssl_target_name_override``); the
server checks that the caller's certificate CN is ``names[sender_rank]`` and that
a P2P key runs ``sender -> me``, refusing anything else. A certificate from
another CA fails the TLS handshake, so nothing flows.

Failures are named from both sides: the party that refuses a peer's certificate
says so (``refused party partner at ...: its certificate is not issued by the
federation CA``), and the refused party, whose handshake the peer closes or whose
pushes it denies, says ``refused by bank: certificate not issued by the federation
CA`` (checked against its own CA file) instead of waiting for a peer that is there.
Veil parties also exchange heartbeats (:meth:`GrpcTransport.start_heartbeats`), so a
dead peer is told from a slow one (see :mod:`veil.net.transport`).
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from veil.errors import ConfigError, NetworkError
from veil.net.certs import TlsFiles, throwaway_federation
from veil.net.grpc_client import PUSH_METHOD, REFUSED, PushClient, send_abort
from veil.net.grpc_config import GrpcConfig
from veil.net.grpc_receiver import PushReceiver
from veil.net.proto import link_pb2
from veil.net.transport import HEARTBEAT_KEY_PREFIX, Mailbox, TrafficStats, Transport

__all__ = [
    "PUSH_METHOD",
    "GrpcConfig",
    "GrpcTransport",
    "TlsFiles",
    "free_port",
    "loopback_configs",
    "loopback_transports",
    "send_abort",
]

log = logging.getLogger(__name__)
Tap = Callable[[int, int, str, bytes], None]
HEARTBEAT_EVERY = 0.5  # seconds between heartbeats
GONE_AFTER = 1.0  # seconds of refused connections after which a peer's process is gone
_WINDOW = 8  # chunks of one value in flight at once


class GrpcTransport(PushClient, Transport):
    """One party's end: a Push server for incoming values, a channel per peer for sends."""

    def __init__(self, cfg: GrpcConfig, tap: Tap | None = None) -> None:
        self.mailbox = Mailbox()
        super().__init__(cfg, self.mailbox)
        self.stats = TrafficStats()
        self.tap = tap
        self._stop = threading.Event()
        self.receiver = PushReceiver(cfg, self.mailbox, self._options)
        if cfg.tls is None:
            log.warning("party %s: gRPC WITHOUT TLS (insecure=True): no authentication", self.name)

    def recv(self, src: int, key: str, timeout: float, peer_name: str = "") -> bytes:
        data = self.mailbox.take(key, src, timeout, peer_name or self.cfg.names[src])
        self.stats.received(src, len(data))
        return data

    def connect(self, timeout: float | None = None) -> None:
        """The interconnection mesh handshake: a barrier until every party is up.

        Pushes ``connect_{rank}`` (empty value) to each peer, then waits for each peer's
        ``connect_{peer}`` (SecretFlow's ``connect_{peer}\\x01\\x02{seq}`` is accepted as the
        same). Raises NetworkError or PeerTimeout naming the party that is not there,
        PeerAborted if it failed before it got here.
        """
        wait = self.cfg.connect_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        for dst in self._peers():
            req = link_pb2.PushRequest(sender_rank=self.rank, key=f"connect_{self.rank}")
            with self.mailbox.waiting_for(dst, "connecting"):
                self._push(dst, req, patience=max(deadline - time.monotonic(), 0.1))
        for src in self._peers():
            left = max(deadline - time.monotonic(), 0.01)
            self.mailbox.take(f"connect_{src}", src, left, self.cfg.names[src])

    def start_heartbeats(
        self, every: float = HEARTBEAT_EVERY, gone_after: float = GONE_AFTER
    ) -> None:
        """Push a heartbeat to every peer each ``every`` seconds until closed (Veil peers
        only: call after :meth:`connect`). A peer whose address refuses connections for
        ``gone_after`` seconds is gone: its waiters stop at once."""
        for dst in self._peers():
            threading.Thread(
                target=self._beat,
                args=(dst, every, gone_after),
                daemon=True,
                name=f"veil-heartbeat-{self.cfg.names[dst]}",
            ).start()

    def _beat(self, dst: int, every: float, gone_after: float) -> None:
        req = link_pb2.PushRequest(sender_rank=self.rank, key=f"{HEARTBEAT_KEY_PREFIX}{self.rank}")
        refused_since: float | None = None
        while not self._stop.wait(every):
            try:
                self._stub(dst)(req, timeout=max(4 * every, 1.0))
                refused_since = None
            except NetworkError:  # closed
                return
            except grpc.RpcError as e:
                if not REFUSED.search(str(e.details())):
                    refused_since = None  # slow or busy, not gone
                    continue
                now = time.monotonic()
                refused_since = refused_since or now
                if now - refused_since >= gone_after:
                    self.mailbox.gone(
                        dst,
                        f"its address {self.cfg.addresses[dst]} refuses connections (its "
                        "process has stopped)",
                    )
                    return
            except Exception:  # a closing channel; nothing to report
                return

    # -- sending side ---------------------------------------------------------
    def send(self, dst: int, key: str, payload: bytes) -> None:
        if not 0 <= dst < len(self.cfg.names) or dst == self.rank:
            raise ConfigError("dst", f"rank {dst} is not a peer of rank {self.rank}")
        self._check_aborted(dst, link_pb2.PushRequest(key=key))
        if self.tap is not None:
            self.tap(self.rank, dst, key, payload)
        n, size = len(payload), self.cfg.chunk_size
        if n <= size:
            self._push(dst, link_pb2.PushRequest(sender_rank=self.rank, key=key, value=payload))
        else:
            self._send_chunked(dst, key, memoryview(payload))
        self.stats.sent(dst, n)

    def _send_chunked(self, dst: int, key: str, view: memoryview) -> None:
        """CHUNKED pushes, up to ``_WINDOW`` in flight (the first one waits for the peer)."""
        n, size = len(view), self.cfg.chunk_size
        reqs = (
            link_pb2.PushRequest(
                sender_rank=self.rank,
                key=key,
                value=bytes(view[off : off + size]),
                trans_type=link_pb2.CHUNKED,
                chunk_info=link_pb2.ChunkInfo(message_length=n, chunk_offset=off),
            )
            for off in range(0, n, size)
        )
        self._push(dst, next(reqs))
        stub = self._stub(dst)
        flying: deque[tuple[Any, grpc.Future[Any]]] = deque()
        try:
            for req in reqs:
                flying.append((req, stub.future(req, timeout=self.cfg.connect_timeout + 30.0)))
                if len(flying) >= _WINDOW:
                    self._settle(dst, *flying.popleft())
            while flying:
                self._settle(dst, *flying.popleft())
        finally:
            for _, fut in flying:
                fut.cancel()

    def _settle(self, dst: int, req: Any, fut: grpc.Future[Any]) -> None:
        """Wait for one pipelined push; a transient failure falls back to a retried push."""
        try:
            self._check(dst, req, fut.result())
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise NetworkError(self._explain(dst, e.code(), str(e.details()), 0)) from None
            self._push(dst, req)

    def close(self) -> None:
        """Stop the heartbeats and the server and close every channel. Idempotent."""
        self._stop.set()
        if self._close_channels():
            self.receiver.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_configs(
    parties: Sequence[str],
    workdir: Path,
    *,
    chunk_size: int = 1 << 20,
    connect_timeout: float = 60.0,
) -> list[GrpcConfig]:
    """One mutual-TLS config per party on 127.0.0.1 (free ports, a throw-away CA in
    ``workdir``). Plain data: hand each to its party's process (``veil run``)."""
    tls = throwaway_federation(parties, Path(workdir))
    addrs = [f"127.0.0.1:{free_port()}" for _ in parties]
    return [
        GrpcConfig(
            rank=r,
            names=list(parties),
            addresses=addrs,
            tls=tls[p],
            chunk_size=chunk_size,
            connect_timeout=connect_timeout,
        )
        for r, p in enumerate(parties)
    ]


@contextmanager
def loopback_transports(
    parties: Sequence[str],
    tap: Tap | None = None,
    *,
    chunk_size: int = 1 << 20,
    connect_timeout: float = 60.0,
) -> Iterator[list[Transport]]:
    """Connected mutual-TLS transports on 127.0.0.1, one per party, with a throw-away CA.

    The throw-away keys are deleted as soon as the transports have read them."""
    made: list[GrpcTransport] = []
    tmp = tempfile.mkdtemp(prefix="veil-tls-")
    try:
        try:
            cfgs = loopback_configs(
                parties, Path(tmp), chunk_size=chunk_size, connect_timeout=connect_timeout
            )
            for cfg in cfgs:
                made.append(GrpcTransport(cfg, tap=tap))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        yield list(made)
    finally:
        for t in made:
            t.close()
