"""ECDH-PSI, two parties, semi-honest [Meadows 1986; Huberman-Franklin-Hogg 1999].

Each party P holds a set of string ids and a secret scalar k_P. H maps an id to a
group element (default suite ``ristretto255``; see :mod:`veil.crypto.ecc`). Because
``[a][b]H(x) == [b][a]H(x)``, equal ids give equal doubly-exponentiated values while
everything else looks random (DDH).

Roles: a party in ``result_to`` is a receiver and learns the intersection; the other
is a sender. With ``result_to`` naming both parties, both are receivers and each
computes the intersection itself (the meaning of ``result_to`` in every PSI protocol).

Flow (party A with scalar a, party B with scalar b; symmetric, both at once):
  0. A        computes [a]H(x) for all its ids, chunk by chunk on its engine (the ids
              may stream from a Parquet folder or SQL table: :class:`IdChunks`), and
              sorts the values: repeats of an id (equal values) are dropped, first
              occurrence kept, and the sorted order is A's send order -- keyed by the
              secret a, a random order that says nothing about A's input order.
     A <-> B  HELLO: number of distinct ids, batch size, suite, result_to and
              truncate_bits (both must agree, else both stop with a ConfigError).
  1. A -> B   ENC: [a]H(x) for A's distinct ids in that order, in batches (B likewise
              sends [b]H(y)).
  2. B        raises each batch to b: [ab]H(x), truncated to t bytes, where
              8t >= log2(N*M) + 40 so a false match has probability <= 2^-40.
              If A is a receiver: B -> A  DUAL, the truncated batch, same order.
              If B is a receiver: B keeps it (the other side of B's comparison).
  3. A (receiver) matches its own duals (from B, in A's send order) against the
     duals of B's set it computed in step 2; the matches are A's intersection.

What each party learns:
  - both: the other's number of distinct ids (and its batch size);
  - a receiver: which of its ids are in the intersection (hence its size); the
    peer's values arrive in the peer's secret random order, so nothing about the
    peer's ids outside the intersection or their positions;
  - a sender: nothing more;
  - with the suite ``curve25519-hash-as-x`` (interconnection only), also one bit per
    peer id, intersection or not: whether its hash lies on the curve or on the twist
    (see :mod:`veil.crypto.ecc`). ``ristretto255`` leaks no such bit.
Raw ids and plain hashes never leave a party: only [k]H(x) and truncated [ab]H(x).

Result order: each receiver's ``indices`` are sorted by the truncated doubly
exponentiated value, which both receivers hold for every common id, so two
receivers list the common ids in the same order (vertical learning aligns rows so).
Duplicates are removed before the protocol (first occurrence kept).

Memory per party (fixed-width numpy records, never a Python object per id): its own
values with their input positions (40 bytes per distinct id); a receiver also the
peer's duals (t bytes per peer id: the set it compares against, inherent to the
protocol) and its own with positions (t + 8). The ids themselves are held one chunk at
a time. All three sets live in a :class:`~veil.protocols.psi.spill.BucketStore` by value
prefix (up to 2^SPILL_BITS buckets in files, 2^MEMORY_BITS in memory), and sorting,
de-duplication and matching run one bucket at a time, so no step needs a second copy
of a set. With ``spill_dir`` set the buckets are files there, and the memory of a run
does not grow with the number of ids (only the receiver's result does: 8 bytes per
common id). The wire is the same either way.
"""

from __future__ import annotations

import contextlib
import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from veil import messages as msg
from veil.crypto import ecc
from veil.errors import ConfigError
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy
from veil.protocols.psi.common import (
    TRUNCATION_SPECS,
    Outbox,
    Protocol,
    PsiParams,
    PsiResult,
    check_params,
    encode_ids,
    exchange_hello,
    hello,
    hello_schema,
    match_duals,
    truncate_bytes,
)
from veil.protocols.psi.kernels import PointKernels, open_point_kernels
from veil.protocols.psi.spill import BucketStore, bits_for, prefix_buckets

PROTOCOL_VERSION = 2  # 2: the suite is named by group and truncation (ristretto255 added)
MAX_BATCH = 1 << 20
CHUNK_IDS = 1 << 16  # ids hashed and blinded per engine call (a partition's worth)
POINT = np.dtype(f"S{ecc.POINT_BYTES}")
OWN = np.dtype([("v", POINT), ("pos", "<i8")])  # a blinded value and its input position
SPILL_BITS = 12  # most bucket bits (by value prefix) of the per-id state kept in files
MEMORY_BITS = 8  # ... and kept in memory, where a bucket costs only its sorting space
DUAL_LAG = 4  # own batches in flight before their DUAL is read


class Tag(StrEnum):
    """Every message of this protocol."""

    HELLO = "hello"  # sizes and parameters, both directions
    ENC = "enc"  # a batch of [k]H(x), 32-byte points concatenated
    DUAL = "dual"  # a batch of truncated [ab]H(x), returned to the owner in its order


HELLO = hello_schema(suite=msg.Str(), batch_size=msg.Int(1, MAX_BATCH), **TRUNCATION_SPECS)
# ENC: msg.Blob(size=count * 32); DUAL: msg.Blob(size=count * t) -- sizes from HELLO.


def run_receiver(
    session: Session,
    ids: Iterable[str] | Sequence[str],
    params: PsiParams,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> PsiResult:
    """Receiver role: learns which of ``ids`` the peer also holds."""
    check_params(session, params, policy, Protocol.ECDH)
    if session.me not in params.result_to:
        raise ConfigError("result_to", f"receiver '{session.me}' is not in {params.result_to}")
    return _run(session, ids, params, policy)


def run_sender(
    session: Session,
    ids: Iterable[str] | Sequence[str],
    params: PsiParams,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> PsiResult:
    """Sender role: helps the peer learn the intersection, learns only the peer's set size."""
    check_params(session, params, policy, Protocol.ECDH)
    if session.me in params.result_to:
        raise ConfigError("result_to", f"sender '{session.me}' is listed in {params.result_to}")
    return _run(session, ids, params, policy)


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


class IdChunks(Iterable[str]):
    """A party's ids read in chunks, one pass (e.g. the partitions of a Parquet folder or
    a SQL table). Iterating gives the ids one by one, so every PSI protocol takes it;
    ECDH-PSI reads it chunk by chunk and never holds the ids themselves."""

    def __init__(self, chunks: Iterable[Sequence[str]]) -> None:
        self._chunks = chunks

    def chunks(self) -> Iterator[Sequence[str]]:
        """The chunks, in input order."""
        return iter(self._chunks)

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            yield from chunk


def id_chunks(ids: Iterable[str] | Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """The ids in chunks: an :class:`IdChunks`'s own, else slices of ``size``."""
    if isinstance(ids, IdChunks):
        yield from ids.chunks()
        return
    if isinstance(ids, str | bytes):
        encode_ids(ids)  # raises the ConfigError (a single string)
    if isinstance(ids, Sequence):
        for a in range(0, len(ids), size):
            yield ids[a : a + size]
        return
    chunk: list[str] = []
    for x in ids:
        chunk.append(x)
        if len(chunk) == size:
            yield chunk
            chunk = []
    yield chunk


def _encode(chunk: Sequence[str], offset: int) -> list[bytes]:
    try:
        return encode_ids(chunk)
    except ConfigError as e:  # name the position in the whole input
        at = re.sub(r"position (\d+)", lambda m: f"position {int(m[1]) + offset}", e.problem)
        raise ConfigError(e.field, at, e.fix) from None


def _blind_own(
    session: Session,
    kernels: PointKernels,
    scalar: bytes,
    ids: Iterable[str] | Sequence[str],
    params: PsiParams,
    *,
    own: BucketStore,
) -> tuple[int, int]:
    """``[k]H(x)`` of every id, chunk by chunk on this party's engine, kept with its input
    position in ``own`` (by value prefix); then each bucket is sorted by value, which is
    the send order (keyed by the secret ``k``, so it says nothing about the input order)
    and puts repeats of an id side by side, so only the first occurrence of each is kept.
    Returns (distinct ids, ids read)."""
    known = len(ids) if isinstance(ids, Sequence) else 0
    n = 0
    for chunk in id_chunks(ids, max(params.batch_size, CHUNK_IDS)):
        points = np.frombuffer(kernels.hash_blind(scalar, _encode(chunk, n), params.suite), POINT)
        rec = np.empty(len(points), dtype=OWN)
        rec["v"], rec["pos"] = points, np.arange(n, n + len(points))
        own.add(rec, prefix_buckets(points, own.bits))
        n += len(chunk)
        if known:
            session.progress("psi", 0.5 * n / known)
    own.flush()
    distinct = 0
    for b in range(own.buckets):
        rec = own.read(b)
        rec = rec[np.argsort(rec["v"], kind="stable")]  # equal values: input order
        first = np.ones(len(rec), dtype=bool)
        first[1:] = rec["v"][1:] != rec["v"][:-1]
        own.write(b, rec if first.all() else rec[first])
        distinct += own.count(b)
    return distinct, n


def _run(
    session: Session,
    ids: Iterable[str] | Sequence[str],
    params: PsiParams,
    policy: SecurityPolicy,
) -> PsiResult:
    suite = params.suite
    scalar = ecc.new_scalar(suite)
    hint = len(ids) if isinstance(ids, Sequence) else None
    kernels = open_point_kernels(params.threads)  # this party's engine (local by default)
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.closing(kernels))
        most = SPILL_BITS if params.spill_dir is not None else MEMORY_BITS
        own = stack.enter_context(BucketStore(OWN, bits_for(hint, most), params.spill_dir))
        n, n_input = _blind_own(session, kernels, scalar, ids, params, own=own)
        plan = _handshake(session, params, n, policy.stat_sec)
        dual = np.dtype(f"S{plan.tbytes}")
        own_duals = np.dtype([("v", dual), ("pos", "<i8")])
        bits = bits_for(max(plan.n, plan.m), most)
        duals = _Duals(
            stack.enter_context(BucketStore(own_duals, bits, params.spill_dir)),
            stack.enter_context(BucketStore(dual, bits, params.spill_dir)),
        )
        _exchange(session, kernels, own, plan, duals, scalar=scalar, suite=suite)
        if not plan.me_learns:
            return PsiResult(None, None, n_input, plan.n, plan.m)
        hits = duals.match()
    return PsiResult(hits, len(hits), n_input, plan.n, plan.m)


@dataclass(frozen=True)
class _Duals:
    """A receiver's two sets of truncated ``[ab]H(.)``: its own (with input positions,
    returned by the peer in this party's send order) and the peer's (computed here), both
    by value prefix, so that the intersection is found bucket by bucket."""

    own: BucketStore
    peer: BucketStore

    def match(self) -> np.ndarray:
        """Input positions of own ids whose dual the peer also has, sorted by dual value
        (ascending buckets, sorted within: the order every receiver shares)."""
        self.own.flush()
        self.peer.flush()
        hits = []
        for b in range(self.own.buckets):
            mine = self.own.read(b)
            found = match_duals(mine["v"], self.peer.read(b), self.peer.dtype.itemsize)
            hits.append(mine["pos"][found])
            self.own.drop(b)
            self.peer.drop(b)
        return np.concatenate(hits) if hits else np.empty(0, dtype=np.int64)


def _send_order(own: BucketStore, size: int) -> Iterator[np.ndarray]:
    """This party's distinct records in send order (by value), in batches of ``size``
    (the last one shorter); a bucket's file is dropped once read."""
    held: list[np.ndarray] = []
    count = 0
    for b in range(own.buckets):
        rec = own.read(b)
        own.drop(b)
        while len(rec):
            take = rec[: size - count]
            held.append(take)
            count += len(take)
            rec = rec[len(take) :]
            if count == size:
                yield held[0] if len(held) == 1 else np.concatenate(held)
                held, count = [], 0
    if count:
        yield np.concatenate(held)


def _exchange(
    session: Session,
    kernels: PointKernels,
    own: BucketStore,
    plan: _Plan,
    duals: _Duals,
    *,
    scalar: bytes,
    suite: ecc.Suite,
) -> None:
    """Send this party's values, blind the peer's (and return them if it learns); a
    receiver keeps the peer's truncated duals (t bytes each: its one O(peer's set)
    structure, inherent to the protocol, on disk when spilling) and its own as they come
    back, DUAL_LAG batches behind, so no reply piles up unread."""
    nb_own = -(-plan.n // plan.my_batch)
    nb_peer = -(-plan.m // plan.peer_batch)
    total = max(nb_own + nb_peer, 1)
    batches = _send_order(own, plan.my_batch)
    waiting: deque[np.ndarray] = deque()  # input positions of sent batches, DUAL due
    bits = duals.own.bits
    with Outbox(session, plan.peer) as out:
        for i in range(max(nb_own, nb_peer)):
            if i < nb_own:
                batch = next(batches)
                out.send(Tag.ENC, np.ascontiguousarray(batch["v"]).tobytes())
                if plan.me_learns:
                    waiting.append(batch["pos"].copy())
            if i < nb_peer:
                expect = min(plan.peer_batch, plan.m - i * plan.peer_batch)
                enc = msg.recv(session, plan.peer, Tag.ENC, msg.Blob(expect * ecc.POINT_BYTES))
                dual = kernels.blind_truncate(scalar, enc, plan.tbytes, suite)
                if plan.peer_learns:
                    out.send(Tag.DUAL, dual)
                if plan.me_learns:
                    values = np.frombuffer(dual, dtype=duals.peer.dtype)
                    duals.peer.add(values, prefix_buckets(values, bits))
            while len(waiting) > DUAL_LAG:
                _take_dual(session, plan, duals.own, waiting.popleft())
            done = min(i + 1, nb_own) + min(i + 1, nb_peer)
            session.progress("psi", 0.5 + 0.5 * done / total)
        while waiting:
            _take_dual(session, plan, duals.own, waiting.popleft())


def _take_dual(session: Session, plan: _Plan, store: BucketStore, pos: np.ndarray) -> None:
    """Receive the peer's DUAL of one of this party's batches (input positions ``pos``)."""
    raw = msg.recv(session, plan.peer, Tag.DUAL, msg.Blob(len(pos) * plan.tbytes))
    rec = np.empty(len(pos), dtype=store.dtype)
    rec["v"], rec["pos"] = np.frombuffer(raw, dtype=rec.dtype["v"]), pos
    store.add(rec, prefix_buckets(rec["v"], store.bits))


def _handshake(session: Session, params: PsiParams, n: int, stat_sec: int) -> _Plan:
    peer = session.peers()[0]
    mine = hello(
        str(Protocol.ECDH),
        PROTOCOL_VERSION,
        n,
        params,
        suite=params.suite.wire_name,
        batch_size=params.batch_size,
        truncate_bits=params.truncate_bits,
        stat_sec=stat_sec,
    )
    agree = ("version", "suite", "result_to", "truncate_bits", "stat_sec")
    theirs = exchange_hello(session, peer, Tag.HELLO, mine, schema=HELLO, agree=agree)
    m = theirs["n"]
    return _Plan(
        peer=peer,
        me_learns=session.me in params.result_to,
        peer_learns=peer in params.result_to,
        n=n,
        m=m,
        my_batch=params.batch_size,
        peer_batch=theirs["batch_size"],
        tbytes=truncate_bytes(n, m, params.truncate_bits, params.suite, stat_sec),
    )
