"""The peer endpoint: mutual-TLS gRPC between nodes for control messages.

One unary method, ``/veil.node.v1.Peer/Call``: the request and the answer are
:func:`veil.codec.encode`-d dicts (never pickled). Both ends present certificates
from the federation CA; the server takes the caller's party name from its verified
certificate (never from the message) and answers only the node's configured peers.
A certificate from another CA fails the TLS handshake. Messages: ``propose``,
``vote``, ``cancel``, ``fail``, ``status``, ``heartbeat``
(:meth:`veil.node.service.NodeService.handle`). The same port carries the jobs'
protocol traffic (``ReceiverService/Push``), multiplexed by job id and relayed to
each job's worker by :class:`veil.node.relay.Relay`.

:class:`Heartbeats` pings every peer each ``heartbeat`` seconds; a peer silent
for ``peer_timeout`` fails every job it takes part in, naming the peer and step.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any, cast

import grpc
from cryptography import x509

from veil.codec import decode, encode
from veil.errors import NetworkError, ProtocolError
from veil.node.config import NodeConfig
from veil.node.model import JobState
from veil.node.relay import MAX_FRAME, PUSH_SERVICE, Relay

log = logging.getLogger(__name__)
SERVICE = "veil.node.v1.Peer"
METHOD = f"/{SERVICE}/Call"
SYNC_S = 3.0  # how often a job a peer still has open is re-synced with it
RETRY_S = 3.0  # how long a call retries a node that refuses connections
# a node that was down is seen again within a second, not after gRPC's default backoff
_BACKOFF = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
Handler = Callable[[str, dict[str, Any]], dict[str, Any]]


def _ident(b: bytes) -> bytes:
    return b


def _caller(context: grpc.ServicerContext) -> tuple[str, bytes | None]:
    auth = cast(Mapping[str, Sequence[bytes]], context.auth_context())
    names = [v.decode("utf-8", "replace") for v in auth.get("x509_common_name", [])]
    pem = auth.get("x509_pem_cert", [None])[0]
    return (names[0] if len(names) == 1 else ""), pem


class PeerServer:
    """The node's gRPC server for its peers."""

    def __init__(self, cfg: NodeConfig, handler: Handler, relay: Relay | None = None) -> None:
        self.cfg = cfg
        self.handler = handler
        self.relay = relay
        self.cert_expiry: dict[str, float] = {}  # peer -> not_valid_after (from its TLS cert)
        self._pool = futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="veil-peer")
        opts = [
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_FRAME),
            ("grpc.max_send_message_length", MAX_FRAME),
        ]
        self._server = grpc.server(self._pool, options=opts)
        h = grpc.unary_unary_rpc_method_handler(
            self._call, request_deserializer=_ident, response_serializer=_ident
        )
        handlers = [grpc.method_handlers_generic_handler(SERVICE, {"Call": h})]
        if relay is not None:
            push = grpc.unary_unary_rpc_method_handler(
                self._push, request_deserializer=_ident, response_serializer=_ident
            )
            handlers.append(grpc.method_handlers_generic_handler(PUSH_SERVICE, {"Push": push}))
        self._server.add_generic_rpc_handlers(tuple(handlers))
        tls = cfg.tls
        creds = grpc.ssl_server_credentials(
            [(Path(tls.key).read_bytes(), Path(tls.cert).read_bytes())],
            root_certificates=Path(tls.ca_cert).read_bytes(),
            require_client_auth=True,
        )
        try:
            port = self._server.add_secure_port(cfg.peer_listen, creds)
        except RuntimeError:
            port = 0
        if not port:
            self._pool.shutdown(wait=False)
            raise NetworkError(
                f"node {cfg.name} cannot listen on {cfg.peer_listen}: is the port free?"
            )
        self._server.start()

    def _peer(self, context: grpc.ServicerContext) -> tuple[str, bytes | None]:
        sender, pem = _caller(context)
        if sender not in self.cfg.peers:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"'{sender}' is not a peer of node '{self.cfg.name}'",
            )
        return sender, pem

    def _push(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        sender, _ = self._peer(context)
        assert self.relay is not None
        return self.relay.push(sender, request, context)

    def _call(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        sender, pem = self._peer(context)
        if pem is not None:
            with_cert = x509.load_pem_x509_certificate(pem)
            self.cert_expiry[sender] = with_cert.not_valid_after_utc.timestamp()
        try:
            msg = decode(request)
        except ProtocolError as e:
            return encode({"ok": False, "error": f"malformed message: {e}"})
        if not isinstance(msg, dict):
            return encode({"ok": False, "error": "a message must be a dict"})
        try:
            answer = self.handler(sender, msg)
        except Exception as e:  # the peer gets a one-line reason, the log the rest
            log.exception("node %s: handling %s from %s", self.cfg.name, msg.get("kind"), sender)
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        return encode(answer)

    def stop(self) -> None:
        """Stop serving (in-flight calls get a second)."""
        self._server.stop(1.0).wait(3.0)
        self._pool.shutdown(wait=False)


class GrpcLink:
    """Calls other nodes' peer endpoints with this node's certificate."""

    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        tls = cfg.tls
        self._creds = grpc.ssl_channel_credentials(
            root_certificates=Path(tls.ca_cert).read_bytes(),
            private_key=Path(tls.key).read_bytes(),
            certificate_chain=Path(tls.cert).read_bytes(),
        )
        self._lock = threading.Lock()
        self._stubs: dict[str, tuple[grpc.Channel, Any]] = {}

    def _stub(self, party: str) -> Any:
        with self._lock:
            if party not in self._stubs:
                addr = self.cfg.peer_address(party)
                opts = [("grpc.ssl_target_name_override", party), *_BACKOFF]
                ch = grpc.secure_channel(addr, self._creds, options=opts)
                stub = ch.unary_unary(
                    METHOD, request_serializer=_ident, response_deserializer=_ident
                )
                self._stubs[party] = (ch, stub)
            return self._stubs[party][1]

    def call(self, party: str, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One call; an unreachable node is retried for a few seconds (it may be starting)."""
        addr = self.cfg.peer_address(party)
        deadline = time.monotonic() + timeout
        patience = time.monotonic() + min(timeout, RETRY_S)
        delay = 0.05
        while True:
            left = max(deadline - time.monotonic(), 0.05)
            try:
                raw = self._stub(party)(encode(msg), timeout=left)
                break
            except grpc.RpcError as e:
                code, detail = e.code(), str(e.details())
                tls = "handshake" in detail.lower() or "certificate" in detail.lower()
                retry = code == grpc.StatusCode.UNAVAILABLE and not tls
                if retry and time.monotonic() + delay < patience:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                if tls:
                    hint = "check that both nodes' certificates come from the same federation CA"
                elif code == grpc.StatusCode.PERMISSION_DENIED:
                    hint = f"add '{self.cfg.name}' to [peers] of node '{party}'"
                else:
                    hint = f"check that node '{party}' runs and listens at {addr}"
                raise NetworkError(
                    f"node '{party}' at {addr} did not answer ({code.name}: {detail}); {hint}"
                ) from None
        try:
            ans = decode(raw)
        except ProtocolError as e:
            raise NetworkError(f"node '{party}' sent a malformed answer: {e}") from None
        if not isinstance(ans, dict):
            raise NetworkError(f"node '{party}' sent a malformed answer (not a dict)")
        return ans

    def close(self) -> None:
        """Close every channel."""
        with self._lock:
            chans = [c for c, _ in self._stubs.values()]
            self._stubs.clear()
        for c in chans:
            c.close()


class Heartbeats:
    """Pings every peer; fails the jobs of a peer that stays silent for ``peer_timeout``."""

    def __init__(self, service: Any, link: Any, server: PeerServer | None = None) -> None:
        self.service = service
        self.link = link
        self.server = server
        cfg: NodeConfig = service.cfg
        self.cfg = cfg
        now = time.monotonic()
        self.last_ok: dict[str, float] = dict.fromkeys(cfg.peers, now)
        self.rtt: dict[str, float | None] = dict.fromkeys(cfg.peers)
        self.error: dict[str, str] = {}
        self._stop = threading.Event()
        self._synced: dict[tuple[str, str], float] = {}
        self._threads = [
            threading.Thread(target=self._ping_loop, args=(p,), daemon=True, name=f"hb-{p}")
            for p in cfg.peers
        ]
        self._threads.append(threading.Thread(target=self._watch, daemon=True, name="hb-watch"))

    def start(self) -> None:
        """Start pinging."""
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop pinging (returns within a heartbeat)."""
        self._stop.set()
        for t in self._threads:
            t.join(self.cfg.heartbeat * 3 + 1.0)

    def _ping_loop(self, peer: str) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                ans = self.link.call(peer, {"kind": "heartbeat"}, max(self.cfg.heartbeat * 2, 1.0))
                self.rtt[peer] = time.monotonic() - t0
                self.last_ok[peer] = time.monotonic()
                self.error.pop(peer, None)
                self._sync(peer, ans.get("open") or [], ans.get("proposed"))
            except NetworkError as e:
                self.error[peer] = str(e)
            self._stop.wait(max(0.0, self.cfg.heartbeat - (time.monotonic() - t0)))

    def _sync(self, peer: str, open_there: list[str], proposed: list[str] | None) -> None:
        """Re-send lost votes and endings, each job at most every ``SYNC_S`` seconds."""
        now = time.monotonic()
        due = [j for j in open_there if now - self._synced.get((peer, str(j)), -SYNC_S) >= SYNC_S]
        for j in due:
            self._synced[(peer, str(j))] = now
        if due:
            self.service.sync(peer, due, None if proposed is None else [str(p) for p in proposed])

    def _watch(self) -> None:
        while not self._stop.wait(min(self.cfg.heartbeat, 1.0)):
            try:
                self.check()
            except Exception:  # never let the watchdog die
                log.exception("node %s: heartbeat check failed", self.cfg.name)

    def check(self) -> None:
        """Fail running jobs whose peers have been silent for ``peer_timeout``."""
        now = time.monotonic()
        for job in self.service.store.jobs():
            if job.state not in (JobState.APPROVED, JobState.RUNNING):
                continue
            for p in job.parties:
                if p == self.cfg.name or p not in self.last_ok:
                    continue
                silent = now - self.last_ok[p]
                if silent > self.cfg.peer_timeout:
                    where = self._where(job.id)
                    self.service.fail(
                        job.id,
                        f"party '{p}' stopped answering heartbeats for {silent:.0f} s {where}",
                    )
                    break

    def _where(self, job_id: str) -> str:
        steps = self.service.store.steps(job_id)
        for s in steps:
            if s.state not in ("ok",):
                return f"during step {s.index} '{s.name}'"
        return "after the last step"

    def peers(self) -> list[dict[str, Any]]:
        """Each peer's liveness, round-trip time and certificate expiry."""
        now = time.monotonic()
        out = []
        for p in sorted(self.cfg.peers):
            exp = None if self.server is None else self.server.cert_expiry.get(p)
            silent = now - self.last_ok[p]
            out.append(
                {
                    "name": p,
                    "address": self.cfg.peers[p],
                    "alive": p not in self.error and silent <= self.cfg.peer_timeout,
                    "rtt_ms": None if self.rtt[p] is None else round(1000 * (self.rtt[p] or 0), 2),
                    "last_seen_s": round(silent, 1),
                    "cert_expires": None
                    if exp is None
                    else dt.datetime.fromtimestamp(exp, dt.UTC).isoformat(),
                    "error": self.error.get(p),
                }
            )
        return out
