"""The sending half of the gRPC transport: Push with retries, aborts, and errors that
say who refused whom.

One channel per peer, pinned to the peer's party name. A push is retried while the
peer is not reachable yet (it may still be starting), never after a TLS or
authorization failure. :func:`send_abort` tells the peers that a party failed
without running a server (``veil run`` does so when its party process dies).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from veil.errors import NetworkError, PeerAborted
from veil.net.certs import own_certificate_problem
from veil.net.grpc_config import JOB_METADATA, GrpcConfig
from veil.net.grpc_receiver import SERVICE
from veil.net.proto import header_pb2, link_pb2
from veil.net.transport import ABORT_KEY_PREFIX, Mailbox, abort_payload, describe_abort

log = logging.getLogger("veil.net.grpc_transport")
PUSH_METHOD = f"/{SERVICE}/Push"
_FRAME_SLACK = 64 * 1024
_MIN_RECV_FRAME = 32 << 20
_CLOSED_IS_REFUSAL = 3  # handshakes the peer closes in a row: it refuses our certificate
TLS_FAILURE = re.compile(
    r"handshake failed|Hostname Verification|CERTIFICATE_VERIFY_FAILED|TLSV1_ALERT|SSLV3_ALERT",
    re.IGNORECASE,
)
_UNKNOWN_CA = re.compile(r"CERTIFICATE_VERIFY_FAILED|unable to get local issuer|UNKNOWN_CA", re.I)
_WRONG_NAME = re.compile(r"Hostname Verification|No match found for server name", re.I)
_CLOSED = re.compile(r"Socket closed|Connection reset", re.I)
REFUSED = re.compile(r"Connection refused|Socket closed|Connection reset", re.I)


class Refused(NetworkError):
    """A certificate was refused: the peer's by us (``by_us``), or ours by the peer."""

    def __init__(self, message: str, *, by_us: bool) -> None:
        super().__init__(message)
        self.by_us = by_us


class _Named:
    """A Push stub whose every call carries the job's metadata (relayed by the nodes)."""

    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub = stub
        self._md = metadata

    def __call__(self, req: Any, timeout: float | None = None) -> Any:
        return self._stub(req, timeout=timeout, metadata=self._md)

    def future(self, req: Any, timeout: float | None = None) -> Any:
        return self._stub.future(req, timeout=timeout, metadata=self._md)


class PushClient:
    """The sending half: one channel per peer, Push with retries, aborts, error texts."""

    def __init__(self, cfg: GrpcConfig, inbox: Mailbox | None = None) -> None:
        """``inbox``: where this party's incoming news is filed (a peer that failed is not
        pushed to any more)."""
        cfg.validate()
        self.cfg = cfg
        self._inbox = inbox
        self.rank = cfg.rank
        self._lock = threading.Lock()
        self._channels: dict[int, tuple[grpc.Channel, Any]] = {}
        self._closed = False
        max_frame = max(cfg.chunk_size + _FRAME_SLACK, _MIN_RECV_FRAME)
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_frame),
            ("grpc.max_send_message_length", max_frame),
            # A peer that starts late (or a refusing one) is tried every second at least,
            # not after gRPC's default backoff of up to two minutes.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        tls = cfg.tls
        # Read once: the key file may be removed (a throw-away one) once we are up.
        self._pem = (
            None
            if tls is None
            else tuple(Path(f).read_bytes() for f in (tls.ca_cert, tls.cert, tls.key))
        )

    @property
    def name(self) -> str:
        """This party's name."""
        return str(self.cfg.names[self.rank])

    def _peers(self) -> list[int]:
        return [r for r in range(len(self.cfg.names)) if r != self.rank]

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
                        private_key=self._pem[2],
                        certificate_chain=self._pem[1],
                    )
                    opts = [*self._options, ("grpc.ssl_target_name_override", self.cfg.names[dst])]
                    ch = grpc.secure_channel(addr, creds, options=opts)
                stub: Any = ch.unary_unary(
                    PUSH_METHOD,
                    request_serializer=link_pb2.PushRequest.SerializeToString,
                    response_deserializer=link_pb2.PushResponse.FromString,
                )
                if self.cfg.job is not None:
                    stub = _Named(stub, ((JOB_METADATA, self.cfg.job),))
                self._channels[dst] = (ch, stub)
            return self._channels[dst][1]

    def _push(self, dst: int, req: Any, patience: float | None = None) -> None:
        """One Push, retried while the peer is unreachable, up to ``patience`` seconds.

        Not retried: a failed TLS handshake (another CA or a wrong name stays wrong), a
        denial, a peer that keeps closing our handshake (it refuses our certificate),
        and a peer that already told us it failed.
        """
        stub = self._stub(dst)
        patience = self.cfg.connect_timeout if patience is None else patience
        deadline = time.monotonic() + patience
        delay, attempt, closed = 0.05, 0, 0
        while True:
            attempt += 1
            left = deadline - time.monotonic()
            try:
                resp = stub(req, timeout=max(left, 0.1) + 30.0)
            except grpc.RpcError as e:
                code, detail = e.code(), str(e.details())
                closed = closed + 1 if _CLOSED.search(detail) else 0
                retry = code == grpc.StatusCode.UNAVAILABLE and not TLS_FAILURE.search(detail)
                retry = retry and closed < _CLOSED_IS_REFUSAL
                if retry and time.monotonic() + delay < deadline:
                    self._check_aborted(dst, req)
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
                closed_out = closed >= _CLOSED_IS_REFUSAL
                msg = self._explain(dst, code, detail, patience, closed_out)
                if msg.startswith("refused "):
                    raise Refused(msg, by_us=not msg.startswith("refused by")) from None
                raise NetworkError(msg) from None
            self._check(dst, req, resp)
            return

    def _check_aborted(self, dst: int, req: Any) -> None:
        failed = None if self._inbox is None else self._inbox.aborted(dst)
        if failed is not None and not str(req.key).startswith(ABORT_KEY_PREFIX):
            raise PeerAborted(describe_abort(self.cfg.names[dst], *failed))

    def _check(self, dst: int, req: Any, resp: Any) -> None:
        if resp.header.error_code != header_pb2.OK:
            raise NetworkError(
                f"party {self.cfg.names[dst]} refused message '{req.key}': "
                f"error {resp.header.error_code} {resp.header.error_msg}"
            )

    def _own_problem(self) -> str | None:
        tls = self.cfg.tls
        return None if tls is None else own_certificate_problem(tls, self.name)

    def _explain(
        self, dst: int, code: grpc.StatusCode, detail: str, waited: float, closed: bool = False
    ) -> str:
        peer, addr = self.cfg.names[dst], self.cfg.addresses[dst]
        ours = f"our certificate must be issued to '{self.name}' by the federation CA"
        if code == grpc.StatusCode.PERMISSION_DENIED or closed:
            why = self._own_problem() or (
                f"{peer} says: {detail}"
                if code == grpc.StatusCode.PERMISSION_DENIED
                else f"{peer} closes the TLS handshake, so it does not accept our certificate"
            )
            return f"refused by {peer}: {why} (at {addr}; {ours})"
        if _UNKNOWN_CA.search(detail):
            return (
                f"refused party {peer} at {addr}: its certificate is not issued by the "
                f"federation CA (our ca.crt); both parties need certificates of the same "
                f"'veil ca' ({detail})"
            )
        if _WRONG_NAME.search(detail):
            return (
                f"refused party {peer} at {addr}: its certificate is not issued to the party "
                f"name '{peer}' ({detail})"
            )
        if TLS_FAILURE.search(detail):
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

    def abort(self, reason: str, *, step: str = "", patience: float = 1.0) -> None:
        """Tell every peer we failed (and in which step); best effort, in parallel."""
        key = f"{ABORT_KEY_PREFIX}{self.rank}"
        value = abort_payload(reason, step)

        def one(dst: int) -> None:
            try:
                req = link_pb2.PushRequest(sender_rank=self.rank, key=key, value=value)
                self._push(dst, req, patience=patience)
            except Exception:  # best effort by design: the peer may be gone
                pass

        threads = [threading.Thread(target=one, args=(d,), daemon=True) for d in self._peers()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(patience + 2.0)

    def _close_channels(self) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            channels = [ch for ch, _ in self._channels.values()]
            self._channels.clear()
        for ch in channels:
            ch.close()
        return True


def send_abort(cfg: GrpcConfig, reason: str, *, step: str = "", patience: float = 1.0) -> None:
    """Tell every peer of ``cfg`` that party ``cfg.rank`` failed, without a server of our own.

    For a supervisor (``veil run``) whose party process died without a word: the peers
    stop at once instead of waiting for it. Best effort; returns within ``patience`` + 2 s.
    """
    client = PushClient(cfg)
    try:
        client.abort(reason, step=step, patience=patience)
    finally:
        client._close_channels()
