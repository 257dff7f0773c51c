"""The receiving half of the gRPC transport: the interconnection Push server.

Files each incoming value in a :class:`Mailbox` under its key. Before anything is
filed it checks that the caller's verified certificate is issued to the party at
``sender_rank`` and that a P2P key runs ``sender -> us``. CHUNKED values are put
back together by offset, in any order, duplicates ignored. Keys ``veil:abort:{rank}``
turn into :meth:`Mailbox.abort`; ``connect_{rank}`` (with SecretFlow's optional
``\\x01\\x02{seq}`` suffix) is filed as ``connect_{rank}``.

Each peer gets a budget (:class:`~veil.net.grpc_config.GrpcConfig` ``max_*``): the
announced length of one value, how many chunked values it has half sent, how many
values it has here that the protocol has not taken yet, and the bytes of all of these
together (a chunked value counts at its announced length from its first chunk, so an
oversized one is refused before its bytes arrive). A push over budget is refused with
RESOURCE_EXHAUSTED naming the limit (the sender's NetworkError quotes it), and every
wait on that peer here raises :class:`~veil.errors.ProtocolError`: the refused value is
lost, so the protocol cannot go on.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn, cast

import grpc

from veil.errors import NetworkError, ProtocolError
from veil.net.grpc_config import PEER_METADATA, GrpcConfig
from veil.net.proto import header_pb2, link_pb2
from veil.net.transport import ABORT_KEY_PREFIX, Mailbox

SERVICE = "org.interconnection.link.ReceiverService"
_P2P_KEY = re.compile(r":P2P-\d+:(\d+)->(\d+)$")
_FINISHED_KEPT = 4096
_CONNECT_KEY = re.compile(r"^connect_(\d+)(?:\x01\x02\d*)?$")  # yacl adds "\x01\x02{seq}"


class _Reassembly:
    """One CHUNKED value being put back together (chunks may arrive in any order).

    Chunks are kept as received and joined once at the end: one copy of the value,
    no zero-filled buffer of its full size up front.
    """

    def __init__(self, length: int) -> None:
        self.length = length
        self.chunks: dict[int, bytes] = {}
        self.filled = 0

    def add(self, offset: int, data: bytes) -> bool:
        """Keep a chunk; True when every byte has arrived. Duplicates are ignored."""
        if offset + len(data) > self.length or (not data and self.length):
            raise ValueError(f"chunk at {offset}+{len(data)} outside a {self.length}-byte value")
        if offset not in self.chunks:
            self.chunks[offset] = data
            self.filled += len(data)
        return self.filled >= self.length

    def join(self) -> bytes:
        """The whole value; ValueError if the chunks overlap or leave a gap."""
        pos = 0
        for off in sorted(self.chunks):
            if off != pos:
                raise ValueError(f"chunks overlap or leave a gap at byte {min(off, pos)}")
            pos += len(self.chunks[off])
        data = b"".join(self.chunks[off] for off in sorted(self.chunks))
        self.chunks.clear()
        return data


class _Budget:
    """What one peer has buffered here: values half received (bytes reserved at their
    announced length) and values filed but not yet taken, by key."""

    def __init__(self) -> None:
        self.partial = 0
        self.reserved = 0
        self.held: dict[str, int] = {}
        self.held_bytes = 0

    def total(self) -> int:
        return self.reserved + self.held_bytes


class _OverBudget(Exception):
    """A push from a peer breaks one of the receive limits (the message says which)."""


class PushReceiver:
    """A started Push server for rank ``cfg.rank``, filing values into ``mailbox``.

    ``frames`` and ``largest_frame`` count what arrived (for tests and diagnostics).
    """

    def __init__(self, cfg: GrpcConfig, mailbox: Mailbox, options: list[tuple[str, Any]]) -> None:
        self.cfg = cfg
        self.rank = cfg.rank
        self.name = str(cfg.names[cfg.rank])
        self.mailbox = mailbox
        self.frames = 0
        self.largest_frame = 0
        self._lock = threading.Lock()
        self._budgets = [_Budget() for _ in cfg.names]
        self._key_owner: dict[str, int] = {}  # filed key -> sender rank, until taken
        mailbox.on_take = self._on_take
        self._partial: dict[tuple[int, str], _Reassembly] = {}
        self._finished: OrderedDict[tuple[int, str], None] = OrderedDict()  # recent, bounded
        self._tls = cfg.tls is not None
        self._relayed = cfg.job is not None  # our node checked the caller's certificate
        self._pool = futures.ThreadPoolExecutor(
            max_workers=max(4, 2 * len(cfg.names)), thread_name_prefix=f"veil-grpc-{self.name}"
        )
        # no SO_REUSEPORT: a second process on our port must fail, not share our traffic
        self._server = grpc.server(self._pool, options=[*options, ("grpc.so_reuseport", 0)])
        handler = grpc.unary_unary_rpc_method_handler(
            self._on_push,
            request_deserializer=link_pb2.PushRequest.FromString,
            response_serializer=link_pb2.PushResponse.SerializeToString,
        )
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Push": handler}),)
        )
        bind = cfg.listen or cfg.addresses[cfg.rank]
        try:
            if cfg.tls is None or self._relayed:  # relayed: a unix socket in a private folder
                port = self._server.add_insecure_port(bind)
            else:
                creds = grpc.ssl_server_credentials(
                    [(Path(cfg.tls.key).read_bytes(), Path(cfg.tls.cert).read_bytes())],
                    root_certificates=Path(cfg.tls.ca_cert).read_bytes(),
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

    def _on_push(self, req: Any, context: grpc.ServicerContext) -> Any:
        src = int(req.sender_rank)
        names = self.cfg.names
        if src >= len(names) or src == self.rank:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"sender_rank {src} is not a peer")
        if self._tls:
            got = _relayed_names(context) if self._relayed else _caller_names(context)
            if names[src] not in got:
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"party {self.name} refuses a push claiming rank {src} ({names[src]}) "
                    f"from a certificate named {sorted(got) or 'nothing'}",
                )
        with self._lock:
            self.frames += 1
            self.largest_frame = max(self.largest_frame, len(req.value))
        key = str(req.key)
        if key.startswith(ABORT_KEY_PREFIX):
            with self._lock:  # drop half-received values of the failed peer
                self._drop_partial(src)
            self.mailbox.abort(src, bytes(req.value).decode("utf-8", "replace"))
            return _ok()
        m = _P2P_KEY.search(key)
        if m and (int(m.group(1)), int(m.group(2))) != (src, self.rank):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"key '{key}' does not run from sender {src} to receiver {self.rank}",
            )
        c = _CONNECT_KEY.match(key)
        if c:
            if int(c.group(1)) != src:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"'{key}' from rank {src}")
            key = f"connect_{src}"
        if req.trans_type == link_pb2.CHUNKED:
            return self._on_chunk(src, key, req, context)
        value = bytes(req.value)
        try:
            with self._lock:
                self._file(src, key, len(value))
        except _OverBudget as e:
            self._refuse(src, key, str(e), context)
        self.mailbox.put(key, value)
        return _ok()

    def _on_chunk(self, src: int, key: str, req: Any, context: grpc.ServicerContext) -> Any:
        info = req.chunk_info
        try:
            with self._lock:
                if (src, key) in self._finished:  # a retried chunk of a value delivered
                    return _ok()
                found = self._partial.get((src, key))
                part = found or self._start(src, key, int(info.message_length))
                if part.length != info.message_length:
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, f"chunk length mismatch on {key}"
                    )
                try:
                    done = part.add(int(info.chunk_offset), req.value)
                except ValueError as e:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{key}: {e}")
                if done:
                    del self._partial[(src, key)]
                    budget = self._budgets[src]
                    budget.partial -= 1
                    budget.reserved -= part.length
                    self._file(src, key, part.length, reserved=True)
                    self._finished[(src, key)] = None
                    if len(self._finished) > _FINISHED_KEPT:
                        self._finished.popitem(last=False)
        except _OverBudget as e:
            self._refuse(src, key, str(e), context)
        if done:
            try:
                data = part.join()
            except ValueError as e:
                self._on_take(key, part.length)  # never filed
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{key}: {e}")
            self.mailbox.put(key, data)
        return _ok()

    # -- per-peer budgets (call under self._lock) ------------------------------------
    def _start(self, src: int, key: str, length: int) -> _Reassembly:
        """A new chunked value: within the peer's limits, its announced length reserved."""
        cfg, budget = self.cfg, self._budgets[src]
        if length > cfg.max_message_bytes:
            raise _OverBudget(
                f"it announces a {length}-byte value, above max_message_bytes="
                f"{cfg.max_message_bytes}"
            )
        if budget.partial >= cfg.max_pending_messages:
            raise _OverBudget(
                f"it has {budget.partial} chunked values half sent, the most "
                f"max_pending_messages={cfg.max_pending_messages} allows"
            )
        self._check_bytes(src, length)
        budget.partial += 1
        budget.reserved += length
        part = self._partial[(src, key)] = _Reassembly(length)
        return part

    def _file(self, src: int, key: str, size: int, reserved: bool = False) -> None:
        """Count a value about to be put in the mailbox under ``key`` against ``src``."""
        cfg, budget = self.cfg, self._budgets[src]
        if size > cfg.max_message_bytes:
            raise _OverBudget(
                f"it sent a {size}-byte value, above max_message_bytes={cfg.max_message_bytes}"
            )
        old = budget.held.get(key)
        if old is None and len(budget.held) >= cfg.max_held_messages:
            raise _OverBudget(
                f"it has {len(budget.held)} values here not yet taken, the most "
                f"max_held_messages={cfg.max_held_messages} allows"
            )
        if not reserved:
            self._check_bytes(src, size - (old or 0))
        budget.held[key] = size
        budget.held_bytes += size - (old or 0)
        self._key_owner[key] = src

    def _check_bytes(self, src: int, more: int) -> None:
        cfg, budget = self.cfg, self._budgets[src]
        if budget.total() + more > cfg.max_held_bytes:
            raise _OverBudget(
                f"{budget.total()} bytes of it are buffered here and {more} more would "
                f"exceed max_held_bytes={cfg.max_held_bytes}"
            )

    def _drop_partial(self, src: int) -> None:
        for k in [k for k in self._partial if k[0] == src]:
            part = self._partial.pop(k)
            self._budgets[src].partial -= 1
            self._budgets[src].reserved -= part.length

    def _on_take(self, key: str, size: int) -> None:
        """The protocol took ``key`` from the mailbox: its bytes leave the peer's budget."""
        with self._lock:
            src = self._key_owner.pop(key, None)
            if src is not None:
                budget = self._budgets[src]
                budget.held_bytes -= budget.held.pop(key, 0)

    def _refuse(self, src: int, key: str, why: str, context: grpc.ServicerContext) -> NoReturn:
        """Refuse a push over budget: the sender hears which limit, our waits on the peer
        raise ProtocolError (the value is lost, the protocol cannot go on)."""
        peer = self.cfg.names[src]
        msg = (
            f"party {self.name} refuses message '{key}' from {peer}: {why} "
            f"(receive limits are set in {self.name}'s GrpcConfig)"
        )
        with self._lock:
            self._drop_partial(src)
        self.mailbox.abort(src, ProtocolError(msg))
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, msg)
        raise AssertionError("context.abort returned")  # it raises

    @property
    def pending(self) -> int:
        """How many CHUNKED values are partly received."""
        with self._lock:
            return len(self._partial)

    def buffered(self, src: int) -> tuple[int, int]:
        """``(values, bytes)`` rank ``src`` has here: half received or not yet taken."""
        with self._lock:
            b = self._budgets[src]
            return b.partial + len(b.held), b.total()

    def stop(self) -> None:
        """Stop serving (in-flight pushes get half a second) and free the threads."""
        self._server.stop(grace=0.5).wait(2.0)
        self._pool.shutdown(wait=False)
        with self._lock:
            for src in range(len(self._budgets)):
                self._drop_partial(src)


def _ok() -> Any:
    return link_pb2.PushResponse(header=header_pb2.ResponseHeader(error_code=header_pb2.OK))


def _relayed_names(context: grpc.ServicerContext) -> set[str]:
    """The sender's party name as the relaying node verified it (``veil-peer``)."""
    return {str(v) for k, v in context.invocation_metadata() if k == PEER_METADATA}


def _caller_names(context: grpc.ServicerContext) -> set[str]:
    """Subject CN(s) of the caller's verified certificate, from the auth context."""
    auth = cast(Mapping[str, Sequence[bytes]], context.auth_context())
    return {v.decode("utf-8", "replace") for v in auth.get("x509_common_name", [])}
