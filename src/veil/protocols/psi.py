"""ECDH-PSI, two parties, semi-honest [Meadows 1986; Huberman-Franklin-Hogg 1999; PPCA 9-2023].

Each party P holds a set of string ids and a secret scalar k_P. H maps an id to a
curve point (suite default: Curve25519, SHA-256, hash-as-x; see
:mod:`veil.crypto.ecc`). Because ``[a][b]H(x) == [b][a]H(x)``, equal ids give
equal doubly-exponentiated values while everything else looks random.

Roles: ``receiver`` learns the intersection, ``sender`` does not. With
``result_to`` naming both parties, both are receivers.

Flow (party A with scalar a, party B with scalar b; symmetric, both at once):
  0. A <-> B  HELLO: number of distinct ids, batch size, suite, result_to and
              truncate_bits (both must agree, else both stop with a ConfigError).
  1. A -> B   ENC: [a]H(x) for A's distinct ids, in an order shuffled with a secure
              permutation, in batches as they are computed (B likewise sends [b]H(y)).
  2. B        raises each batch to b: [ab]H(x), truncated to t bytes, where
              8t >= log2(N*M) + 40 so a false match has probability <= 2^-40.
              If A is a receiver: B -> A  DUAL, the truncated batch, same order.
              If B is a receiver: B keeps it (the other side of B's comparison).
  3. A (receiver) matches its own duals (from B, in A's shuffled order) against the
     duals of B's set it computed in step 2; the matches are A's intersection.

What each party learns:
  - both: the other's number of distinct ids (and its batch size);
  - a receiver: which of its ids are in the intersection (hence its size); the
    peer's values arrive in the peer's secret random order, so nothing about the
    peer's ids outside the intersection or their positions;
  - a sender: nothing more.
Raw ids and plain hashes never leave a party: only [k]H(x) and truncated [ab]H(x).

Result order: each receiver's ``indices`` are sorted by the truncated doubly
exponentiated value, which both receivers hold for every common id, so two
receivers list the common ids in the same order (vertical learning aligns rows so).
Duplicates are removed before the protocol (first occurrence kept).
"""

from __future__ import annotations

import math
import queue
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from veil.crypto import ecc
from veil.errors import ConfigError, ProtocolError
from veil.net.session import Session

PROTOCOL_VERSION = 1
STATISTICAL_BITS = 40  # false-match probability bound 2^-40 after truncation
MIN_TRUNCATE_BITS = 64


class Tag(StrEnum):
    """Every message of this protocol."""

    HELLO = "hello"  # sizes and parameters, both directions
    ENC = "enc"  # a batch of [k]H(x), 32-byte points concatenated
    DUAL = "dual"  # a batch of truncated [ab]H(x), returned to the owner in its order


class Protocol(StrEnum):
    """Which PSI protocol ``run_psi`` runs: ECDH (this module; interoperates with
    SecretFlow) or KKRT (:mod:`veil.protocols.kkrt_psi`, OT extension, faster)."""

    ECDH = "ecdh"
    KKRT = "kkrt"


class Role(StrEnum):
    """Protocol roles: a receiver learns the intersection, a sender does not."""

    RECEIVER = "receiver"
    SENDER = "sender"


@dataclass(frozen=True)
class PsiParams:
    """Options of a PSI run; both parties must give the same ``result_to``/``truncate_bits``.

    ``truncate_bits=None`` picks max(log2(N*M)+40, 64) rounded up to whole bytes.
    ``threads=None`` uses every core this process may run on.
    ``protocol``: ECDH (default) or KKRT; ``batch_size``, ``threads`` and ``suite`` are
    ECDH's (KKRT picks its own message sizes and is single-threaded numpy).
    """

    result_to: tuple[str, ...]
    batch_size: int = 4096
    threads: int | None = None
    truncate_bits: int | None = None
    suite: ecc.Suite = ecc.DEFAULT_SUITE
    protocol: Protocol = Protocol.ECDH


@dataclass(frozen=True)
class PsiResult:
    """What one party gets out of PSI.

    ``indices``: positions in this party's input of the common ids, one per distinct id
    (its first occurrence), in the order both receivers share; None for a sender.
    """

    indices: np.ndarray | None
    size: int | None
    n_input: int
    n_distinct: int
    peer_n_distinct: int


def run_psi(session: Session, ids: Iterable[str] | Sequence[str], params: PsiParams) -> PsiResult:
    """Entry point for a job step: play receiver or sender as ``params.result_to`` says."""
    _check_params(session, params)
    if params.protocol == Protocol.KKRT:
        from veil.protocols import kkrt_psi

        return kkrt_psi.run_psi(session, ids, params)
    role = Role.RECEIVER if session.me in params.result_to else Role.SENDER
    return {Role.RECEIVER: run_receiver, Role.SENDER: run_sender}[role](session, ids, params)


def run_receiver(
    session: Session, ids: Iterable[str] | Sequence[str], params: PsiParams
) -> PsiResult:
    """Receiver role: learns which of ``ids`` the peer also holds."""
    _check_params(session, params, Protocol.ECDH)
    if session.me not in params.result_to:
        raise ConfigError("result_to", f"receiver '{session.me}' is not in {params.result_to}")
    return _run(session, ids, params)


def run_sender(
    session: Session, ids: Iterable[str] | Sequence[str], params: PsiParams
) -> PsiResult:
    """Sender role: helps the peer learn the intersection, learns only the peer's set size."""
    _check_params(session, params, Protocol.ECDH)
    if session.me in params.result_to:
        raise ConfigError("result_to", f"sender '{session.me}' is listed in {params.result_to}")
    return _run(session, ids, params)


def kept_bits(n: int, m: int, truncate_bits: int | None, pairs: int = 1) -> int:
    """Bits to keep of each compared value so that ``pairs * n * m`` chance comparisons
    collide with probability below 2^-40: ``truncate_bits`` if it is enough (else an
    error naming the bound), or the bound itself (at least ``MIN_TRUNCATE_BITS``)."""
    need = math.ceil(math.log2(max(pairs * n * m, 1))) + STATISTICAL_BITS
    if truncate_bits is None:
        return max(need, MIN_TRUNCATE_BITS)
    if truncate_bits < need:
        nm = "N*M" if pairs == 1 else f"{pairs}*N*M"
        raise ConfigError(
            "truncate_bits",
            f"{truncate_bits} bits is below log2({nm})+40 = {need} for sets of {n} and {m} ids",
            f"use at least {need}, or None to choose automatically",
        )
    return truncate_bits


def truncate_bytes(n: int, m: int, truncate_bits: int | None) -> int:
    """Bytes kept of each doubly exponentiated value for sets of sizes ``n`` and ``m``."""
    return min(math.ceil(kept_bits(n, m, truncate_bits) / 8), ecc.POINT_BYTES)


# -- the shared body of both roles ---------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    peer: str
    me_learns: bool
    peer_learns: bool
    n: int
    m: int
    my_batch: int
    peer_batch: int
    tbytes: int


def _run(session: Session, ids: Iterable[str] | Sequence[str], params: PsiParams) -> PsiResult:
    raw = encode_ids(ids)
    distinct = first_occurrences(raw)
    order = distinct[secure_permutation(len(distinct))]  # send order -> input position
    plan = _handshake(session, params, len(distinct))
    scalar = ecc.new_scalar(params.suite)
    own_duals: list[bytes] = []
    peer_duals: list[bytes] = []
    nb_own = -(-plan.n // plan.my_batch)
    nb_peer = -(-plan.m // plan.peer_batch)
    total = max(nb_own + nb_peer, 1)
    with ecc.ScalarMultiplier(params.threads) as mul, _Outbox(session, plan.peer) as out:
        for i in range(max(nb_own, nb_peer)):
            if i < nb_own:
                idx = order[i * plan.my_batch : (i + 1) * plan.my_batch]
                points = ecc.hash_to_points([raw[j] for j in idx], params.suite)
                out.send(Tag.ENC, b"".join(mul(scalar, points)))
            if i < nb_peer:
                expect = min(plan.peer_batch, plan.m - i * plan.peer_batch)
                theirs = _recv_points(session, plan.peer, Tag.ENC, expect, ecc.POINT_BYTES)
                dual = ecc.truncate(mul(scalar, theirs), plan.tbytes, params.suite)
                if plan.peer_learns:
                    out.send(Tag.DUAL, dual)
                if plan.me_learns:
                    peer_duals.append(dual)
            session.progress("psi", (min(i + 1, nb_own) + min(i + 1, nb_peer)) / total)
    if not plan.me_learns:
        return PsiResult(None, None, len(raw), plan.n, plan.m)
    for i in range(nb_own):
        expect = min(plan.my_batch, plan.n - i * plan.my_batch)
        own_duals.append(_recv_bytes(session, plan.peer, Tag.DUAL, expect * plan.tbytes))
    hits = match_duals(b"".join(own_duals), b"".join(peer_duals), plan.tbytes)
    return PsiResult(order[hits], len(hits), len(raw), plan.n, plan.m)


class _Outbox:
    """Sends to one peer from a background thread, in order, so computing never waits
    for a network round trip; at most ``depth`` batches wait (memory stays bounded)."""

    def __init__(self, session: Session, peer: str, depth: int = 8) -> None:
        self._session, self._peer = session, peer
        self._q: queue.Queue[tuple[str, Any] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True, name="psi-outbox")
        self._thread.start()

    def _loop(self) -> None:
        while (item := self._q.get()) is not None:
            if self._error is None:
                try:
                    self._session.send(self._peer, *item)
                except BaseException as e:
                    self._error = e

    def send(self, tag: str, value: Any) -> None:
        """Queue ``value``; raises the error of an earlier send, if any."""
        if self._error is not None:
            raise self._error
        self._q.put((tag, value))

    def __enter__(self) -> _Outbox:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is not None:  # failing: drop what is queued, do not wait on a dead peer
            self._error = self._error or e
            while not self._q.empty():
                self._q.get_nowait()
        self._q.put(None)
        self._thread.join(None if et is None else 5.0)
        if self._error is not None and et is None:
            raise self._error


def _handshake(session: Session, params: PsiParams, n: int) -> _Plan:
    peer = session.peers()[0]
    mine = {
        "protocol": str(Protocol.ECDH),
        "version": PROTOCOL_VERSION,
        "suite": params.suite.name,
        "n": n,
        "batch_size": params.batch_size,
        "result_to": sorted(params.result_to),
        "truncate_bits": params.truncate_bits,
    }
    session.send(peer, Tag.HELLO, mine)
    theirs = session.recv(peer, Tag.HELLO)
    if isinstance(theirs, dict) and theirs.get("protocol") != mine["protocol"]:
        raise ConfigError(
            "params.protocol",
            f"this party ({session.me}) runs {mine['protocol']!r}, peer {peer} runs "
            f"{theirs.get('protocol')!r}",
            "give both parties the same PSI step",
        )
    if not isinstance(theirs, dict) or set(theirs) != set(mine):
        raise ProtocolError(f"peer {peer} sent a malformed {Tag.HELLO} message")
    for key in ("version", "suite", "result_to", "truncate_bits"):
        if theirs[key] != mine[key]:
            raise ConfigError(
                f"params.{key}",
                f"this party ({session.me}) has {mine[key]!r}, peer {peer} has {theirs[key]!r}",
                "give both parties the same PSI step",
            )
    m, peer_batch = theirs["n"], theirs["batch_size"]
    if not (isinstance(m, int) and m >= 0 and isinstance(peer_batch, int) and peer_batch >= 1):
        raise ProtocolError(f"peer {peer} sent an invalid set size or batch size")
    return _Plan(
        peer=peer,
        me_learns=session.me in params.result_to,
        peer_learns=peer in params.result_to,
        n=n,
        m=m,
        my_batch=params.batch_size,
        peer_batch=peer_batch,
        tbytes=truncate_bytes(n, m, params.truncate_bits),
    )


def _recv_bytes(session: Session, peer: str, tag: Tag, nbytes: int) -> bytes:
    data = session.recv(peer, tag)
    if not isinstance(data, bytes) or len(data) != nbytes:
        got = len(data) if isinstance(data, bytes) else type(data).__name__
        raise ProtocolError(f"peer {peer} sent a {tag} batch of {got}, expected {nbytes} bytes")
    return data


def _recv_points(session: Session, peer: str, tag: Tag, count: int, width: int) -> list[bytes]:
    return ecc.split_points(_recv_bytes(session, peer, tag, count * width), width)


def match_duals(own: bytes, peer: bytes, width: int) -> np.ndarray:
    """Positions of ``own`` values found in ``peer``, sorted by value (a shared order)."""
    dtype = np.dtype(f"S{width}")  # fixed width: distinct byte strings stay distinct
    mine = np.frombuffer(own, dtype=dtype)
    hits = np.flatnonzero(np.isin(mine, np.frombuffer(peer, dtype=dtype)))
    return hits[np.argsort(mine[hits], kind="stable")]


# -- input handling --------------------------------------------------------------------


def _check_params(session: Session, params: PsiParams, protocol: Protocol | None = None) -> None:
    """Check ``params`` for this session; ``protocol``: the one the caller implements."""
    if len(session.parties) != 2:
        raise ConfigError("parties", f"PSI needs exactly two parties, got {session.parties}")
    if not isinstance(params, PsiParams):
        raise ConfigError("params", f"expected PsiParams, got {type(params).__name__}")
    if params.protocol not in set(Protocol):
        raise ConfigError(
            "protocol",
            f"{params.protocol!r} is not a PSI protocol",
            "use 'ecdh' (default, interoperates with SecretFlow) or 'kkrt' (OT extension)",
        )
    if protocol is not None and params.protocol != protocol:
        raise ConfigError(
            "protocol",
            f"these role functions run {protocol.value}, the params ask for {params.protocol}",
            "call run_psi, or the role functions of the protocol's own module",
        )
    rt = params.result_to
    if isinstance(rt, str) or not isinstance(rt, tuple) or not 1 <= len(rt) <= 2:
        raise ConfigError("result_to", f"{rt!r} is not a tuple of 1 or 2 party names")
    for p in rt:
        if p not in session.parties:
            raise ConfigError("result_to", f"'{p}' is not a party of this job {session.parties}")
    if len(set(rt)) != len(rt):
        raise ConfigError("result_to", f"{rt!r} names a party twice")
    if not isinstance(params.batch_size, int) or params.batch_size < 1:
        raise ConfigError("batch_size", f"must be a positive integer, got {params.batch_size!r}")
    tb = params.truncate_bits
    if tb is not None and (not isinstance(tb, int) or not 1 <= tb <= 8 * ecc.POINT_BYTES):
        raise ConfigError("truncate_bits", f"must be None or 1..256, got {tb!r}")
    if not isinstance(params.suite, ecc.Suite):
        raise ConfigError("suite", f"expected an ecc.Suite, got {type(params.suite).__name__}")


def encode_ids(ids: Iterable[str] | Sequence[str]) -> list[bytes]:
    """utf-8 bytes of every id; rejects nulls and non-strings naming the position."""
    if isinstance(ids, str | bytes):
        raise ConfigError("ids", "got a single string, not a collection of ids", "pass a list")
    out: list[bytes] = []
    for pos, x in enumerate(ids):
        if type(x) is not str:
            _reject(pos, x)
        try:
            out.append(x.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise ConfigError("ids", f"id at position {pos} is not valid unicode: {e}") from None
    return out


def _reject(pos: int, x: object) -> None:
    """Raise for a null or non-string id; str subclasses pass."""
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        raise ConfigError("ids", f"id at position {pos} is null", "drop or fill null ids")
    if not isinstance(x, str):
        raise ConfigError(
            "ids",
            f"id at position {pos} is a {type(x).__name__}, not a string",
            "convert the id column to strings first",
        )


def first_occurrences(raw: list[bytes]) -> np.ndarray:
    """Input positions of the first occurrence of each distinct id, ascending."""
    if not raw:
        return np.zeros(0, dtype=np.int64)
    dup = pd.Index(raw, dtype=object).duplicated(keep="first")
    return np.flatnonzero(~dup).astype(np.int64)


def secure_permutation(n: int) -> np.ndarray:
    """A uniformly random permutation of range(n) from the OS generator."""
    keys = np.frombuffer(secrets.token_bytes(8 * n), dtype=np.uint64)
    return np.argsort(keys, kind="stable")
