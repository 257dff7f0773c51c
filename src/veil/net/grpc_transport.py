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
a P2P key really runs ``sender -> me``, refusing anything else. A certificate from
another CA fails the TLS handshake, so nothing flows.
"""

from __future__ import annotations

import logging
import re
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
from veil.net.grpc_config import GrpcConfig
from veil.net.grpc_receiver import SERVICE, PushReceiver
from veil.net.proto import header_pb2, link_pb2
from veil.net.transport import ABORT_KEY_PREFIX, Mailbox, TrafficStats, Transport

__all__ = [
    "PUSH_METHOD",
    "GrpcConfig",
    "GrpcTransport",
    "TlsFiles",
    "free_port",
    "loopback_configs",
    "loopback_transports",
]

log = logging.getLogger(__name__)
Tap = Callable[[int, int, str, bytes], None]
PUSH_METHOD = f"/{SERVICE}/Push"
_FRAME_SLACK = 64 * 1024
_MIN_RECV_FRAME = 32 << 20
_ABORT_TIMEOUT = 2.0
_WINDOW = 8  # chunks of one value in flight at once
_TLS_FAILURE = re.compile(
    r"handshake failed|Hostname Verification|CERTIFICATE_VERIFY_FAILED|TLSV1_ALERT|SSLV3_ALERT",
    re.IGNORECASE,
)


class GrpcTransport(Transport):
    """One party's end: a Push server for incoming values, a channel per peer for sends."""

    def __init__(self, cfg: GrpcConfig, tap: Tap | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.rank = cfg.rank
        self.stats = TrafficStats()
        self.tap = tap
        self.mailbox = Mailbox()
        self._lock = threading.Lock()
        self._channels: dict[int, tuple[grpc.Channel, Any]] = {}
        self._closed = False
        max_frame = max(cfg.chunk_size + _FRAME_SLACK, _MIN_RECV_FRAME)
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_frame),
            ("grpc.max_send_message_length", max_frame),
        ]
        tls = cfg.tls
        self._pem = (
            None
            if tls is None
            else (Path(tls.ca_cert).read_bytes(), Path(tls.cert).read_bytes(), tls.key)
        )
        self.receiver = PushReceiver(cfg, self.mailbox, self._options)
        if tls is None:
            log.warning("party %s: gRPC WITHOUT TLS (insecure=True): no authentication", self.name)

    @property
    def name(self) -> str:
        """This party's name."""
        return str(self.cfg.names[self.rank])

    def recv(self, src: int, key: str, timeout: float, peer_name: str = "") -> bytes:
        data = self.mailbox.take(key, src, timeout, peer_name or self.cfg.names[src])
        self.stats.received(src, len(data))
        return data

    def connect(self, timeout: float | None = None) -> None:
        """The interconnection mesh handshake: a barrier until every party is up.

        Pushes ``connect_{rank}`` (empty value) to each peer, then waits for each peer's
        ``connect_{peer}`` (SecretFlow's ``connect_{peer}\\x01\\x02{seq}`` is accepted as the
        same). Raises NetworkError or PeerTimeout naming the party that is not there.
        """
        wait = self.cfg.connect_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        peers = [r for r in range(len(self.cfg.names)) if r != self.rank]
        for dst in peers:
            req = link_pb2.PushRequest(sender_rank=self.rank, key=f"connect_{self.rank}")
            self._push(dst, req, patience=max(deadline - time.monotonic(), 0.1))
        for src in peers:
            left = max(deadline - time.monotonic(), 0.01)
            self.mailbox.take(f"connect_{src}", src, left, self.cfg.names[src])

    # -- sending side ---------------------------------------------------------
    def _stub(self, dst: int) -> Any:
        with self._lock:
            if self._closed:
                raise NetworkError(f"party {self.name}: transport is closed")
            if dst not in self._channels:
                addr = self.cfg.addresses[dst]
                if self._pem is None:
                    ch = grpc.insecure_channel(addr, options=self._options)
                else:
                    creds = grpc.ssl_channel_credentials(
                        root_certificates=self._pem[0],
                        private_key=Path(self._pem[2]).read_bytes(),
                        certificate_chain=self._pem[1],
                    )
                    opts = [*self._options, ("grpc.ssl_target_name_override", self.cfg.names[dst])]
                    ch = grpc.secure_channel(addr, creds, options=opts)
                stub = ch.unary_unary(
                    PUSH_METHOD,
                    request_serializer=link_pb2.PushRequest.SerializeToString,
                    response_deserializer=link_pb2.PushResponse.FromString,
                )
                self._channels[dst] = (ch, stub)
            return self._channels[dst][1]

    def send(self, dst: int, key: str, payload: bytes) -> None:
        if not 0 <= dst < len(self.cfg.names) or dst == self.rank:
            raise ConfigError("dst", f"rank {dst} is not a peer of rank {self.rank}")
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

    def _push(self, dst: int, req: Any, patience: float | None = None) -> None:
        """One Push, retried while the peer is unreachable, up to ``patience`` seconds.

        A failed TLS handshake is not retried: another CA or a wrong name stays wrong.
        """
        stub = self._stub(dst)
        patience = self.cfg.connect_timeout if patience is None else patience
        deadline = time.monotonic() + patience
        delay, attempt = 0.05, 0
        while True:
            attempt += 1
            left = deadline - time.monotonic()
            try:
                resp = stub(req, timeout=max(left, 0.1) + 30.0)
            except grpc.RpcError as e:
                code, detail = e.code(), str(e.details())
                retry = code == grpc.StatusCode.UNAVAILABLE and not _TLS_FAILURE.search(detail)
                if retry and time.monotonic() + delay < deadline:
                    if attempt == 4:  # once per push, after ~0.35 s of refusals
                        log.info(
                            "party %s: waiting for %s at %s (not reachable yet)",
                            self.name,
                            self.cfg.names[dst],
                            self.cfg.addresses[dst],
                        )
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)  # a starting peer is seen soon
                    continue
                raise NetworkError(self._explain(dst, code, detail, patience)) from None
            self._check(dst, req, resp)
            return

    def _check(self, dst: int, req: Any, resp: Any) -> None:
        if resp.header.error_code != header_pb2.OK:
            raise NetworkError(
                f"party {self.cfg.names[dst]} refused message '{req.key}': "
                f"error {resp.header.error_code} {resp.header.error_msg}"
            )

    def _explain(self, dst: int, code: grpc.StatusCode, detail: str, waited: float) -> str:
        peer, addr = self.cfg.names[dst], self.cfg.addresses[dst]
        if code == grpc.StatusCode.PERMISSION_DENIED:
            hint = f"our certificate must be issued to '{self.name}' by the federation CA"
        elif _TLS_FAILURE.search(detail):
            hint = (
                f"the TLS handshake failed: check that {peer}'s certificate and ours are signed "
                f"by the same federation CA (ca.crt) and that {peer}'s is issued to the party "
                f"name '{peer}'"
            )
        elif code == grpc.StatusCode.UNAVAILABLE:
            hint = (
                f"gave up after {waited:.0f} s; check that {peer} is running and listening at "
                f"{addr}, that its certificate is signed by the same federation CA as ours "
                f"and issued to the party name '{peer}'"
            )
        else:
            hint = f"check that {peer} at {addr} runs a compatible Veil/interconnection peer"
        return f"cannot deliver to party {peer} at {addr} ({code.name}: {detail}); {hint}"

    def abort(self, reason: str) -> None:
        """Tell every peer we failed; best effort, in parallel, a couple of seconds at most."""
        key = f"{ABORT_KEY_PREFIX}{self.rank}"
        value = reason.encode("utf-8", "replace")[:4096]

        def one(dst: int) -> None:
            try:
                req = link_pb2.PushRequest(sender_rank=self.rank, key=key, value=value)
                self._push(dst, req, patience=_ABORT_TIMEOUT)
            except Exception:  # best effort by design: the peer may be gone
                pass

        threads = [
            threading.Thread(target=one, args=(d,), daemon=True)
            for d in range(len(self.cfg.names))
            if d != self.rank
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(_ABORT_TIMEOUT + 1.0)

    def close(self) -> None:
        """Stop the server and close every channel. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            channels = [ch for ch, _ in self._channels.values()]
            self._channels.clear()
        for ch in channels:
            ch.close()
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
    """Connected mutual-TLS transports on 127.0.0.1, one per party, with a throw-away CA."""
    with tempfile.TemporaryDirectory(prefix="veil-tls-") as tmp:
        cfgs = loopback_configs(
            parties, Path(tmp), chunk_size=chunk_size, connect_timeout=connect_timeout
        )
        made: list[GrpcTransport] = []
        try:
            for cfg in cfgs:
                made.append(GrpcTransport(cfg, tap=tap))
            yield list(made)
        finally:
            for t in made:
                t.close()
