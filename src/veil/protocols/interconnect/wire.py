"""The interconnection link on gRPC: ``org.interconnection.link.ReceiverService/Push``.

A :class:`veil.net.transport.Transport` whose frames are ``PushRequest`` messages, so any
standard peer (SecretFlow's yacl link with ``h2:grpc``) can talk to it. Values larger
than ``max_payload`` travel ``CHUNKED`` (``chunk_info`` = total length and offset) and are
reassembled on arrival in whatever order the chunks come. Mutual TLS unless the caller
passes ``tls=None`` explicitly (plaintext, for a peer that has no TLS).

Stopgap: the general gRPC transport (branch ``grpc``) speaks the same wire; once it is
on main this module should shrink to a thin adapter over it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from veil.errors import ConfigError, NetworkError
from veil.net.transport import ABORT_KEY_PREFIX, Mailbox, TrafficStats, Transport
from veil.protocols.interconnect.proto import link_pb2

PUSH_METHOD = "/org.interconnection.link.ReceiverService/Push"
#: yacl's default ``http_max_payload_size``: larger values are sent CHUNKED.
DEFAULT_MAX_PAYLOAD = 1024 * 1024
_GRPC_LIMIT = 256 * 1024 * 1024
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for mutual TLS: the CA both sides trust, and this party's cert and key."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        out = []
        for name in ("ca", "cert", "key"):
            path = Path(getattr(self, name))
            try:
                out.append(path.read_bytes())
            except OSError as e:
                raise ConfigError(
                    f"--{name}", f"cannot read {path}: {e.strerror}", "make one with `veil ca`"
                ) from None
        return out[0], out[1], out[2]


@dataclass(frozen=True)
class LinkConfig:
    """Where this rank listens, where every rank is, and how to secure the link."""

    rank: int
    listen: str
    addresses: Sequence[str]
    tls: TlsFiles | None
    max_payload: int = DEFAULT_MAX_PAYLOAD
    connect_timeout: float = 60.0
    server_name: str = ""
    #: After a connection to a peer drops, how long it may take to come back before
    #: every wait on that peer fails (a crashed peer must not leave us hanging).
    reconnect_grace: float = 3.0

    def __post_init__(self) -> None:
        if not 0 <= self.rank < len(self.addresses):
            raise ConfigError("rank", f"{self.rank} is not a rank of {len(self.addresses)} parties")
        if self.max_payload < 1:
            raise ConfigError("max_payload", "must be at least 1 byte")
        for a in (self.listen, *self.addresses):
            host, _, port = a.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError("address", f"'{a}' is not HOST:PORT", "e.g. 127.0.0.1:61600")


class _Assembler:
    """CHUNKED values being put back together, by key."""

    def __init__(self) -> None:
        self._parts: dict[str, tuple[bytearray, int]] = {}
        self._lock = threading.Lock()

    def add(self, key: str, total: int, offset: int, chunk: bytes) -> bytes | None:
        if offset + len(chunk) > total:
            raise NetworkError(f"chunk of '{key}' at {offset}+{len(chunk)} overruns {total} bytes")
        with self._lock:
            buf, got = self._parts.get(key) or (bytearray(total), 0)
            buf[offset : offset + len(chunk)] = chunk
            got += len(chunk)
            if got >= total:
                self._parts.pop(key, None)
                return bytes(buf)
            self._parts[key] = (buf, got)
            return None


class IcGrpcTransport(Transport):
    """One rank's end of an interconnection link (server + one client channel per peer)."""

    def __init__(self, cfg: LinkConfig) -> None:
        self.rank = cfg.rank
        self.stats = TrafficStats()
        self.cfg = cfg
        self.mailbox = Mailbox()
        self._chunks = _Assembler()
        self.chunks_received = 0
        opts = [
            ("grpc.max_receive_message_length", _GRPC_LIMIT),
            ("grpc.max_send_message_length", _GRPC_LIMIT),
        ]
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=opts)
        handler = grpc.unary_unary_rpc_method_handler(
            self._on_push,
            request_deserializer=link_pb2.PushRequest.FromString,
            response_serializer=link_pb2.PushResponse.SerializeToString,
        )
        self._server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "org.interconnection.link.ReceiverService", {"Push": handler}
                ),
            )
        )
        if cfg.tls is None:
            port = self._server.add_insecure_port(cfg.listen)
        else:
            ca, cert, key = cfg.tls.read()
            creds = grpc.ssl_server_credentials([(key, cert)], ca, require_client_auth=True)
            port = self._server.add_secure_port(cfg.listen, creds)
        if port == 0:
            raise ConfigError("listen", f"cannot listen on {cfg.listen}", "pick a free port")
        self.port = port
        self._server.start()
        self._channels: dict[int, grpc.Channel] = {}
        self._push: dict[int, Any] = {}
        self._ready: set[int] = set()
        self._lost: dict[int, str] = {}
        self._closing = False
        self._watchers: dict[int, Any] = {}
        for r, addr in enumerate(cfg.addresses):
            if r == self.rank:
                continue
            if cfg.tls is None:
                ch = grpc.insecure_channel(addr, options=opts)
            else:
                ca, cert, key = cfg.tls.read()
                ccreds = grpc.ssl_channel_credentials(ca, key, cert)
                o: list[tuple[str, Any]] = list(opts)
                if cfg.server_name:
                    o.append(("grpc.ssl_target_name_override", cfg.server_name))
                ch = grpc.secure_channel(addr, ccreds, options=o)
            self._channels[r] = ch
            self._watchers[r] = functools.partial(self._on_state, r)
            ch.subscribe(self._watchers[r], try_to_connect=False)
            self._push[r] = ch.unary_unary(
                PUSH_METHOD,
                request_serializer=link_pb2.PushRequest.SerializeToString,
                response_deserializer=link_pb2.PushResponse.FromString,
            )

    # -- peer liveness ----------------------------------------------------
    def _on_state(self, r: int, state: grpc.ChannelConnectivity) -> None:
        if state == grpc.ChannelConnectivity.READY:
            self._ready.add(r)
        elif r in self._ready and not self._closing:
            self._ready.discard(r)
            threading.Thread(target=self._check_peer, args=(r,), daemon=True).start()

    def _check_peer(self, r: int) -> None:
        try:
            grpc.channel_ready_future(self._channels[r]).result(timeout=self.cfg.reconnect_grace)
        except (grpc.FutureTimeoutError, ValueError):
            if self._closing:
                return
            why = f"connection to rank {r} at {self.cfg.addresses[r]} was lost (peer exited?)"
            self._lost[r] = why
            self.mailbox.abort(r, why)

    # -- receiving --------------------------------------------------------
    def _on_push(self, req: Any, context: Any) -> Any:
        rsp = link_pb2.PushResponse()
        try:
            src = int(req.sender_rank)
            if req.key.startswith(ABORT_KEY_PREFIX):
                self.mailbox.abort(src, req.value.decode("utf-8", "replace"))
                return rsp
            if req.trans_type == link_pb2.CHUNKED:
                self.chunks_received += 1
                info = req.chunk_info
                whole = self._chunks.add(req.key, info.message_length, info.chunk_offset, req.value)
                if whole is None:
                    return rsp
                value = whole
            else:
                value = req.value
            self.stats.received(src, len(value))
            self.mailbox.put(req.key, value)
        except Exception as e:  # answer the peer instead of killing the server thread
            _log.warning("bad push from peer: %s", e)
            rsp.header.error_code = 31100100  # INVALID_REQUEST
            rsp.header.error_msg = str(e)
        return rsp

    def recv(self, src: int, key: str, timeout: float, peer_name: str = "") -> bytes:
        return self.mailbox.take(key, src, timeout, peer_name)

    # -- sending ----------------------------------------------------------
    def _call(self, dst: int, req: Any) -> None:
        if dst in self._lost:
            raise NetworkError(f"cannot send '{req.key!r}': {self._lost[dst]}")
        try:
            rsp = self._push[dst](req, timeout=self.cfg.connect_timeout, wait_for_ready=True)
        except KeyError:
            raise ConfigError("dst", f"no address for rank {dst}") from None
        except grpc.RpcError as e:
            raise NetworkError(
                f"push '{req.key!r}' to rank {dst} at {self.cfg.addresses[dst]} failed: "
                f"{e.code().name}: {e.details()} -- check that the peer is listening there "
                "and that both sides agree on TLS"
            ) from None
        if rsp.header.error_code:
            raise NetworkError(
                f"rank {dst} refused '{req.key!r}': {rsp.header.error_code} {rsp.header.error_msg}"
            )

    def send(self, dst: int, key: str, payload: bytes) -> None:
        limit = self.cfg.max_payload
        if len(payload) <= limit:
            req = link_pb2.PushRequest(sender_rank=self.rank, key=key, value=payload)
            self._call(dst, req)
        else:
            for off in range(0, len(payload), limit):
                req = link_pb2.PushRequest(
                    sender_rank=self.rank,
                    key=key,
                    value=payload[off : off + limit],
                    trans_type=link_pb2.CHUNKED,
                    chunk_info=link_pb2.ChunkInfo(message_length=len(payload), chunk_offset=off),
                )
                self._call(dst, req)
        self.stats.sent(dst, len(payload))

    def abort(self, reason: str) -> None:
        for dst in self._push:  # wake our own waiters too
            self.mailbox.abort(dst, f"this party failed: {reason}")
        for dst, push in self._push.items():
            req = link_pb2.PushRequest(
                sender_rank=self.rank, key=f"{ABORT_KEY_PREFIX}{self.rank}", value=reason.encode()
            )
            try:
                push(req, timeout=2.0)
            except grpc.RpcError:
                _log.debug("abort to rank %d not delivered", dst)

    def close(self) -> None:
        self._closing = True
        for r, ch in self._channels.items():
            ch.unsubscribe(self._watchers[r])
            ch.close()
        self._server.stop(grace=1.0)
