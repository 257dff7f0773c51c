"""Mutual-TLS gRPC transport on the privacy-computing interconnection wire.

Every message is one ``org.interconnection.link.ReceiverService/Push`` call
(``PushRequest{sender_rank, key, value, trans_type, chunk_info}``, see
``proto/link.proto``), so a SecretFlow interconnection peer can talk to Veil.
Each party runs a server that files incoming values in a :class:`Mailbox` by key;
``send`` pushes to the peer's server. Values over ``chunk_size`` go as several
CHUNKED pushes sharing the key, reassembled by offset in any order, so no frame is
ever larger than one chunk.

Security: both ends present certificates signed by the federation CA. The client
pins the server's name to the expected party (``ssl_target_name_override``); the
server checks that the caller's certificate CN is ``names[sender_rank]`` and that
a P2P key really runs ``sender -> me``, refusing anything else. A certificate from
another CA fails the TLS handshake, so nothing flows.
"""

from __future__ import annotations

import re
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc

from veil.errors import ConfigError, NetworkError
from veil.net.certs import TlsFiles, check_party_name, throwaway_federation
from veil.net.proto import header_pb2, link_pb2
from veil.net.transport import ABORT_KEY_PREFIX, Mailbox, TrafficStats, Transport

Tap = Callable[[int, int, str, bytes], None]
PUSH_METHOD = "/org.interconnection.link.ReceiverService/Push"
_SERVICE = "org.interconnection.link.ReceiverService"
_P2P_KEY = re.compile(r":P2P-\d+:(\d+)->(\d+)$")
_FRAME_SLACK = 64 * 1024
_MIN_RECV_FRAME = 32 << 20
_ABORT_TIMEOUT = 2.0
_WINDOW = 8  # chunks of one value in flight at once
_TLS_FAILURE = re.compile(
    r"handshake failed|Hostname Verification|CERTIFICATE_VERIFY_FAILED|TLSV1_ALERT|SSLV3_ALERT",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class GrpcConfig:
    """Where the parties are and how this one talks to them.

    ``names[r]`` is rank r's party name (and certificate name); ``addresses[r]`` is
    its ``host:port``; we listen on ``listen`` or ``addresses[rank]``.
    """

    rank: int
    names: Sequence[str]
    addresses: Sequence[str]
    tls: TlsFiles | None
    insecure: bool = False
    chunk_size: int = 1 << 20
    connect_timeout: float = 60.0
    listen: str | None = None

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        n = len(self.names)
        if n < 2:
            raise ConfigError("names", "a transport needs at least two parties")
        if len(self.addresses) != n:
            raise ConfigError(
                "addresses", f"{len(self.addresses)} addresses for {n} parties", "give one each"
            )
        if len(set(self.names)) != n:
            raise ConfigError("names", f"party names must be unique, got {list(self.names)}")
        for i, name in enumerate(self.names):
            check_party_name(name, f"names[{i}]")
        if not 0 <= self.rank < n:
            raise ConfigError("rank", f"{self.rank} is not in 0..{n - 1}")
        for i, a in enumerate([*self.addresses, *([self.listen] if self.listen else [])]):
            if not re.match(r"^\S+:\d{1,5}$", a):
                raise ConfigError(f"addresses[{i}]", f"'{a}' is not host:port")
        if self.tls is None and not self.insecure:
            raise ConfigError(
                "tls", "no certificates given", "pass TlsFiles (see 'veil ca'), or insecure=True"
            )
        if self.tls is not None:
            for f in ("ca_cert", "cert", "key"):
                p = Path(getattr(self.tls, f))
                if not p.is_file():
                    raise ConfigError(f"tls.{f}", f"{p} does not exist", "see 'veil ca issue'")
        if self.chunk_size < 1024:
            raise ConfigError("chunk_size", f"{self.chunk_size} is too small", "use >= 1024")
        if self.connect_timeout <= 0:
            raise ConfigError("connect_timeout", "must be positive")


class _Reassembly:
    """One CHUNKED value being put back together (chunks may arrive in any order)."""

    def __init__(self, length: int) -> None:
        self.buf = bytearray(length)
        self.offsets: set[int] = set()
        self.filled = 0

    def add(self, offset: int, data: bytes) -> bool:
        """Copy a chunk in; True when the value is complete. Duplicates are ignored."""
        if offset + len(data) > len(self.buf) or (not data and len(self.buf)):
            raise ValueError(f"chunk at {offset}+{len(data)} outside a {len(self.buf)}-byte value")
        if offset not in self.offsets:
            self.offsets.add(offset)
            self.buf[offset : offset + len(data)] = data
            self.filled += len(data)
        return self.filled >= len(self.buf)


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
        self._partial: dict[tuple[int, str], _Reassembly] = {}
        self._channels: dict[int, tuple[grpc.Channel, Any]] = {}
        self._closed = False
        max_frame = max(cfg.chunk_size + _FRAME_SLACK, _MIN_RECV_FRAME)
        self._options = [
            ("grpc.max_receive_message_length", max_frame),
            ("grpc.max_send_message_length", max_frame),
        ]
        tls = cfg.tls
        self._pem = (
            None
            if tls is None
            else (Path(tls.ca_cert).read_bytes(), Path(tls.cert).read_bytes(), tls.key)
        )
        self._pool = futures.ThreadPoolExecutor(
            max_workers=max(4, 2 * len(cfg.names)), thread_name_prefix=f"veil-grpc-{self.name}"
        )
        # no SO_REUSEPORT: a second process on our port must fail, not share our traffic
        self._server = grpc.server(self._pool, options=[*self._options, ("grpc.so_reuseport", 0)])
        handler = grpc.unary_unary_rpc_method_handler(
            self._on_push,
            request_deserializer=link_pb2.PushRequest.FromString,
            response_serializer=link_pb2.PushResponse.SerializeToString,
        )
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(_SERVICE, {"Push": handler}),)
        )
        bind = cfg.listen or cfg.addresses[cfg.rank]
        try:
            if self._pem is None:
                port = self._server.add_insecure_port(bind)
            else:
                creds = grpc.ssl_server_credentials(
                    [(Path(self._pem[2]).read_bytes(), self._pem[1])],
                    root_certificates=self._pem[0],
                    require_client_auth=True,
                )
                port = self._server.add_secure_port(bind, creds)
        except RuntimeError as e:
            port, err = 0, str(e)
        else:
            err = ""
        if not port:
            self._pool.shutdown(wait=False)
            raise NetworkError(
                f"party {self.name} cannot listen on {bind}: {err or 'bind failed'}; "
                "check that the port is free and the address belongs to this machine"
            )
        self._server.start()

    @property
    def name(self) -> str:
        """This party's name."""
        return str(self.cfg.names[self.rank])

    # -- receiving side -------------------------------------------------------
    def _on_push(self, req: Any, context: grpc.ServicerContext) -> Any:
        src = int(req.sender_rank)
        names = self.cfg.names
        if src >= len(names) or src == self.rank:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"sender_rank {src} is not a peer")
        if self._pem is not None:
            got = _caller_names(context)
            if names[src] not in got:
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"party {self.name} refuses a push claiming rank {src} ({names[src]}) "
                    f"from a certificate named {sorted(got) or 'nothing'}",
                )
        key = str(req.key)
        if key.startswith(ABORT_KEY_PREFIX):
            with self._lock:  # drop half-received values of the failed peer
                for k in [k for k in self._partial if k[0] == src]:
                    del self._partial[k]
            self.mailbox.abort(src, bytes(req.value).decode("utf-8", "replace"))
            return _ok()
        m = _P2P_KEY.search(key)
        if m and (int(m.group(1)), int(m.group(2))) != (src, self.rank):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"key '{key}' does not run from sender {src} to receiver {self.rank}",
            )
        if req.trans_type == link_pb2.CHUNKED:
            return self._on_chunk(src, key, req, context)
        self.mailbox.put(key, bytes(req.value))
        return _ok()

    def _on_chunk(self, src: int, key: str, req: Any, context: grpc.ServicerContext) -> Any:
        info = req.chunk_info
        with self._lock:
            part = self._partial.get((src, key))
            if part is None:
                part = self._partial[(src, key)] = _Reassembly(int(info.message_length))
            elif len(part.buf) != info.message_length:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"chunk length mismatch on {key}")
            try:
                done = part.add(int(info.chunk_offset), req.value)
            except ValueError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{key}: {e}")
            if done:
                del self._partial[(src, key)]
        if done:
            data = bytes(part.buf)
            part.buf = bytearray()  # free the reassembly buffer before anyone decodes
            self.mailbox.put(key, data)
        return _ok()

    def recv(self, src: int, key: str, timeout: float, peer_name: str = "") -> bytes:
        data = self.mailbox.take(key, src, timeout, peer_name or self.cfg.names[src])
        self.stats.received(src, len(data))
        return data

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
        delay = 0.05
        while True:
            left = deadline - time.monotonic()
            try:
                resp = stub(req, timeout=max(left, 0.1) + 30.0)
            except grpc.RpcError as e:
                code, detail = e.code(), str(e.details())
                retry = code == grpc.StatusCode.UNAVAILABLE and not _TLS_FAILURE.search(detail)
                if retry and time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
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
        self._server.stop(grace=0.5).wait(2.0)
        self._pool.shutdown(wait=False)
        with self._lock:
            self._partial.clear()


def _ok() -> Any:
    return link_pb2.PushResponse(header=header_pb2.ResponseHeader(error_code=header_pb2.OK))


def _caller_names(context: grpc.ServicerContext) -> set[str]:
    """Subject CN(s) of the caller's verified certificate, from the auth context."""
    auth = cast(Mapping[str, Sequence[bytes]], context.auth_context())
    return {v.decode("utf-8", "replace") for v in auth.get("x509_common_name", [])}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        tls = throwaway_federation(parties, Path(tmp))
        addrs = [f"127.0.0.1:{free_port()}" for _ in parties]
        made: list[GrpcTransport] = []
        try:
            for r, p in enumerate(parties):
                cfg = GrpcConfig(
                    rank=r,
                    names=list(parties),
                    addresses=addrs,
                    tls=tls[p],
                    chunk_size=chunk_size,
                    connect_timeout=connect_timeout,
                )
                made.append(GrpcTransport(cfg, tap=tap))
            yield list(made)
        finally:
            for t in made:
                t.close()
