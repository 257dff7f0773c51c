"""What every PSI protocol shares: parameters, result type, input handling, the HELLO
exchange, truncation lengths, matching, and the background sender.

``result_to`` means the same in every protocol: each party it names ends with the
intersection (its own ``indices``), every receiver in the same order; a party it does
not name learns no more than the set sizes the protocol reveals (see each protocol's
docstring). How a receiver comes to hold the result is the protocol's business: in ECDH
both receivers compute it; in KKRT the OPRF receiver computes it and tells the other.
"""

from __future__ import annotations

import math
import os
import queue
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from veil import messages as msg
from veil.crypto import ecc
from veil.errors import ConfigError
from veil.net.session import Session
from veil.policy import SecurityPolicy

STATISTICAL_BITS = 40  # DEFAULT_POLICY.stat_sec: what the helpers assume when not told
MIN_TRUNCATE_BITS = 64
MAX_IDS = 1 << 40  # a peer announcing more ids than this is refused
MAX_PARTIES = 64


class Protocol(StrEnum):
    """Which PSI protocol ``run_psi`` runs: ECDH (:mod:`.ecdh`; with three or more
    parties :mod:`.multiparty`; the interconnection wire SecretFlow speaks is
    :mod:`veil.protocols.interconnect`), KKRT (:mod:`.kkrt`, OT extension, faster, two
    parties) or RR22 (:mod:`.rr22`, VOLE and OKVS, the fastest, two parties)."""

    ECDH = "ecdh"
    KKRT = "kkrt"
    RR22 = "rr22"


@dataclass(frozen=True)
class PsiParams:
    """Options of a PSI run; every party must give the same ``result_to``/``truncate_bits``.

    ``result_to``: the parties that learn the intersection (see the module docstring).
    ``truncate_bits=None`` picks max(log2(N*M)+40, 64) rounded up to whole bytes.
    ``threads=None`` uses every core this process may run on.
    ``protocol``: ECDH (default here; the ``psi`` job step picks RR22 between two
    parties), KKRT or RR22; ``batch_size``, ``threads`` and ``suite`` are ECDH's (KKRT
    and RR22 pick their own message sizes and run single-threaded numpy and C).
    ``spill_dir``: a folder where the run keeps its per-id state in files, bucket by
    bucket, so its memory does not grow with the number of ids (ECDH, RR22; KKRT keeps
    its cuckoo table and OT rows in memory whatever this says); None keeps it in memory.
    A local choice, never sent to the peer.
    """

    result_to: tuple[str, ...]
    batch_size: int = 4096
    threads: int | None = None
    truncate_bits: int | None = None
    suite: ecc.Suite = ecc.DEFAULT_SUITE
    protocol: Protocol = Protocol.ECDH
    spill_dir: str | None = None


@dataclass(frozen=True)
class PsiResult:
    """What one party gets out of PSI.

    ``indices``: positions in this party's input of the common ids, one per distinct id
    (its first occurrence), in the order every receiver shares; None for a party not in
    ``result_to``. ``peer_n_distinct``: the other party's number of distinct ids (with
    more than two parties, the smallest of the others').
    """

    indices: np.ndarray | None
    size: int | None
    n_input: int
    n_distinct: int
    peer_n_distinct: int


def oprf_receiver(session: Session, params: PsiParams) -> str:
    """The OPRF receiver of a two-party OPRF-based PSI (KKRT, RR22): the first party of
    ``result_to`` in the job's party order; the other party plays OPRF sender."""
    return next(p for p in session.parties if p in params.result_to)


def check_params(
    session: Session,
    params: PsiParams,
    policy: SecurityPolicy,
    protocol: Protocol | None = None,
    parties: tuple[int, int] = (2, 2),
) -> None:
    """Check ``params`` for this session: ``protocol`` is the one the caller implements,
    ``parties`` the least and most parties it runs between."""
    lo, hi = parties
    if not lo <= len(session.parties) <= hi:
        want = "exactly two" if lo == hi == 2 else f"{lo} to {hi}"
        raise ConfigError("parties", f"PSI needs {want} parties, got {session.parties}")
    if not isinstance(params, PsiParams):
        raise ConfigError("params", f"expected PsiParams, got {type(params).__name__}")
    if params.protocol not in set(Protocol):
        raise ConfigError(
            "protocol",
            f"{params.protocol!r} is not a PSI protocol",
            "use 'ecdh' (default), 'kkrt' (OT extension) or 'rr22' (VOLE)",
        )
    if protocol is not None and params.protocol != protocol:
        raise ConfigError(
            "protocol",
            f"these role functions run {protocol.value}, the params ask for {params.protocol}",
            "call run_psi, or the role functions of the protocol's own module",
        )
    rt = params.result_to
    n = len(session.parties)
    if isinstance(rt, str) or not isinstance(rt, tuple) or not 1 <= len(rt) <= n:
        raise ConfigError("result_to", f"{rt!r} is not a tuple of 1 to {n} party names")
    for p in rt:
        if p not in session.parties:
            raise ConfigError("result_to", f"'{p}' is not a party of this job {session.parties}")
    if len(set(rt)) != len(rt):
        raise ConfigError("result_to", f"{rt!r} names a party twice")
    if not isinstance(params.batch_size, int) or params.batch_size < 1:
        raise ConfigError("batch_size", f"must be a positive integer, got {params.batch_size!r}")
    t = params.threads
    if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
        raise ConfigError("threads", f"must be a positive integer or None, got {t!r}")
    if not isinstance(params.suite, ecc.Suite):
        raise ConfigError("suite", f"expected an ecc.Suite, got {type(params.suite).__name__}")
    policy.check_suite(params.suite.name)
    tb, top = params.truncate_bits, 8 * params.suite.uniform_bytes
    if tb is not None and (isinstance(tb, bool) or not isinstance(tb, int) or not 1 <= tb <= top):
        raise ConfigError("truncate_bits", f"must be None or 1..{top}, got {tb!r}")
    sd = params.spill_dir
    if sd is not None and (not isinstance(sd, str) or not os.path.isdir(sd)):
        raise ConfigError(
            "spill_dir", f"{sd!r} is not an existing folder", "create it, or leave spill_dir unset"
        )


# -- the HELLO exchange ------------------------------------------------------------------

_HELLO_SPECS: dict[str, msg.Spec[object]] = {
    "protocol": msg.Str(),
    "version": msg.Int(),
    "n": msg.Int(0, MAX_IDS),
    "result_to": msg.StrList(MAX_PARTIES),
}
TRUNCATION_SPECS: dict[str, msg.Spec[object]] = {
    "truncate_bits": msg.Nullable(msg.Int(1, 256)),
    "stat_sec": msg.Int(1, 256),
}
"""The HELLO fields of the protocols that truncate compared values (ECDH, KKRT)."""


def hello_schema(**extra: msg.Spec[object]) -> msg.Record:
    """The HELLO every PSI protocol sends (protocol, version, its set size, who learns the
    result) plus the protocol's ``extra`` fields."""
    return msg.Record({**_HELLO_SPECS, **extra})


def hello(
    protocol: str, version: int, n: int, params: PsiParams, **extra: object
) -> dict[str, object]:
    """This party's HELLO for :func:`hello_schema`: ``n`` distinct ids, ``params.result_to``
    (sorted: every party sends the same list) and ``extra``."""
    return {
        "protocol": protocol,
        "version": version,
        "n": n,
        "result_to": sorted(params.result_to),
        **extra,
    }


def exchange_hello(
    session: Session,
    peer: str,
    tag: str,
    mine: Mapping[str, Any],
    *,
    schema: msg.Record,
    agree: Sequence[str],
) -> dict[str, Any]:
    """Send ``mine`` to ``peer`` and check its HELLO: another protocol or a field of
    ``agree`` that differs is a :class:`ConfigError` (the job is wrong), a malformed
    message a :class:`ProtocolError`."""
    session.send(peer, tag, dict(mine))
    theirs = session.recv(peer, tag)
    return check_hello(session, peer, tag, theirs, mine=mine, schema=schema, agree=agree)


def exchange_oprf_sizes(
    session: Session,
    params: PsiParams,
    *,
    protocol: str,
    version: int,
    tag: str,
    schema: msg.Record,
    mine_n: int,
    receiver: bool,
    stat_sec: int,
) -> tuple[str, int, int]:
    """The HELLO of a two-party OPRF-based PSI (KKRT, RR22): both must agree on version,
    ``result_to``, truncation and ``stat_sec``. Returns the peer, the OPRF receiver's
    distinct-id count ``n`` and the sender's ``m``."""
    peer = session.peers()[0]
    mine = hello(
        protocol, version, mine_n, params, truncate_bits=params.truncate_bits, stat_sec=stat_sec
    )
    agree = ("version", "result_to", "truncate_bits", "stat_sec")
    other = int(exchange_hello(session, peer, tag, mine, schema=schema, agree=agree)["n"])
    n, m = (mine_n, other) if receiver else (other, mine_n)
    return peer, n, m


def check_hello(
    session: Session,
    peer: str,
    tag: str,
    theirs: Any,
    *,
    mine: Mapping[str, Any],
    schema: msg.Record,
    agree: Sequence[str],
) -> dict[str, Any]:
    """The checks of :func:`exchange_hello` on a HELLO already received."""
    if isinstance(theirs, dict) and theirs.get("protocol") != mine["protocol"]:
        raise ConfigError(
            "params.protocol",
            f"this party ({session.me}) runs {mine['protocol']!r}, peer {peer} runs "
            f"{theirs.get('protocol')!r}",
            "give every party the same PSI step",
        )
    got: dict[str, Any] = msg.check(theirs, schema, tag, peer)
    for key in agree:
        if got[key] != mine[key]:
            raise ConfigError(
                f"params.{key}",
                f"this party ({session.me}) has {mine[key]!r}, peer {peer} has {got[key]!r}",
                "give every party the same PSI step",
            )
    return got


# -- truncation and matching -------------------------------------------------------------


def kept_bits(
    n: int, m: int, truncate_bits: int | None, pairs: int = 1, stat_sec: int = STATISTICAL_BITS
) -> int:
    """Bits to keep of each compared value so that ``pairs * n * m`` chance comparisons
    collide with probability below 2^-stat_sec (the policy's): ``truncate_bits`` if it is
    enough (else an error naming the bound), or the bound itself (at least
    ``MIN_TRUNCATE_BITS``)."""
    need = math.ceil(math.log2(max(pairs * n * m, 1))) + stat_sec
    if truncate_bits is None:
        return max(need, MIN_TRUNCATE_BITS)
    if truncate_bits < need:
        nm = "N*M" if pairs == 1 else f"{pairs}*N*M"
        raise ConfigError(
            "truncate_bits",
            f"{truncate_bits} bits is below log2({nm})+{stat_sec} = {need} for sets of "
            f"{n} and {m} ids",
            f"use at least {need}, or None to choose automatically",
        )
    return truncate_bits


def truncate_bytes(
    n: int,
    m: int,
    truncate_bits: int | None,
    suite: ecc.Suite = ecc.DEFAULT_SUITE,
    stat_sec: int = STATISTICAL_BITS,
) -> int:
    """Bytes kept of each doubly exponentiated value for sets of sizes ``n`` and ``m``."""
    bits = kept_bits(n, m, truncate_bits, stat_sec=stat_sec)
    return min(math.ceil(bits / 8), suite.uniform_bytes)


def match_duals(
    own: bytes | bytearray | np.ndarray, peer: bytes | bytearray | np.ndarray, width: int
) -> np.ndarray:
    """Positions of ``own`` values found in ``peer``, sorted by value (a shared order);
    each side concatenated values or an array of them (``S{width}``)."""
    dtype = np.dtype(f"S{width}")  # fixed width: distinct byte strings stay distinct
    mine = own if isinstance(own, np.ndarray) else np.frombuffer(own, dtype=dtype)
    theirs = peer if isinstance(peer, np.ndarray) else np.frombuffer(peer, dtype=dtype)
    hits = np.flatnonzero(np.isin(mine, theirs))
    return hits[np.argsort(mine[hits], kind="stable")]


# -- sending without waiting -------------------------------------------------------------


class Outbox:
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

    def __enter__(self) -> Outbox:
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


# -- input handling --------------------------------------------------------------------


def encode_ids(ids: Iterable[str] | Sequence[str], start: int = 0) -> list[bytes]:
    """utf-8 bytes of every id; rejects nulls and non-strings naming the position
    (counted from ``start``, for a chunk of a longer input)."""
    if isinstance(ids, str | bytes):
        raise ConfigError("ids", "got a single string, not a collection of ids", "pass a list")
    out: list[bytes] = []
    for pos, x in enumerate(ids, start):
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


def distinct_ids(ids: Iterable[str] | Sequence[str]) -> tuple[list[bytes], np.ndarray]:
    """:func:`encode_ids` of ``ids`` and the :func:`first_occurrences` among them."""
    raw = encode_ids(ids)
    return raw, first_occurrences(raw)


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
