"""RR22-PSI: two parties, semi-honest, from an OPRF built on VOLE and an OKVS, by buckets.

[Raghuraman, Rindal, "Blazing Fast PSI from Improved OKVS and Subfield VOLE", CCS 2022
(RR22)], with the banded OKVS of [Bienstock, Patel, Seo, Yeo, "Near-Optimal Oblivious
Key-Value Stores for Efficient PSI, PSU and Volume-Hiding Multi-Maps", USENIX Security
2023] (:mod:`.okvs`: band width 128, m = (1 + eps) n columns for a failure probability
<= 2^-stat_sec, eps about 0.2) and the silent VOLE of :mod:`.vole` over GF(2^128)
(:mod:`.gf128`; the VOLE's docstring and :mod:`.lpn` give the expand-convolute code
and its parameters for 128-bit computational security). Hashing as in RR22's reference
implementation (volePSI, ``RsOprf``), under keys drawn for the run (:mod:`.aeshash`):
ids to 128-bit digests d(x) by AES CBC-MAC; H(x) = MMO(d(x)) into GF(2^128); the
output hash MMO(v) (MMO: x -> AES_k(x) ^ x, a correlation-robust hash).
Large sets run as B independent RR22 instances over hash buckets of the digests
(:mod:`.buckets`; SecretFlow's bucket PSI bins the same way), each bucket padded to a
public bound, so the memory of a run is that of one bucket besides the digests (16
bytes and an index per id); with ``PsiParams.spill_dir`` a party keeps its digests in
files there instead (:func:`.buckets.hold_ids`), and its memory does not grow with
its number of ids (beyond the receiver's result). The wire is the same either way.

Roles: the OPRF ``receiver`` R (VOLE receiver) computes the intersection; the OPRF
``sender`` S (VOLE sender) holds the OPRF key Delta. The OPRF receiver is the first
party of ``result_to`` in the job's party order; if the other party is in
``result_to`` too, R tells it the result (step 5), as in :mod:`.kkrt`.

Flow (R with n distinct ids Y, S with m distinct ids X):
  0. R -> S   SETUP: a fresh 16-byte seed; both derive the digest, H and output keys,
              and hash their ids to digests chunk by chunk (:class:`IdChunks` streams;
              the ids are never held as a whole), grouped by shard (the digest's top
              bits) and de-duplicated shard by shard (:func:`.buckets.hold_ids`: in
              memory, or in one file per shard under ``spill_dir``).
  1. R <-> S  HELLO: protocol, version, number of distinct ids, result_to,
              truncate_bits, stat_sec (both must agree). An empty side ends it here.
              Both derive B (:func:`.buckets.bucket_count`: 1 up to BUCKET_TARGET ids)
              and the padded bounds n_B = bound(n, B), m_B = bound(m, B) (n_B = n and
              m_B = m when B = 1); M = okvs.params_for(n_B).m. A party whose bucket
              holds more ids than its bound stops with a ProtocolError (probability
              <= 2^-stat_sec per party).
  2. R <-> S  VOLE of length M per bucket (one base-OT and IKNP setup for all; one
              bucket's output alive at a time): S gets Delta and B_b, R gets A_b and
              C_b = B_b + A_b * Delta.
  For each bucket b, in order:
  3. R        encodes P_b = Encode({(d(y), H(y)) : y in Y_b}) into M entries
              (re-seeding the OKVS locally in the <= 2^-stat_sec event that it fails).
     R -> S   OKVS: the OKVS seed; then MASKED: P_b + A_b, by chunks.
  4. S        K = B_b + Delta * (P_b + A_b) = C_b + Delta * P_b, and for each x in X_b
              F(x) = MMO(Decode(K, d(x)) + Delta * H(x)), truncated to w bytes,
              8w >= stat_sec + log2(n m); padded with uniformly random w-byte values
              to m_B.
     S -> R   VALUES: the m_B values in an order shuffled by a secure permutation.
  5. R        F(y) = MMO(Decode(C_b, d(y))) for y in Y_b (= S's value when y is in X);
              the ids whose value is among S's values of the bucket are in the
              intersection. R matches bucket b - 1 after sending MASKED(b), so
              neither party waits for the other's bucket.
     R -> S   RESULT (only if S is in result_to): the bucket's wire positions of the
              matched values, ascending (bucket by bucket: the order both report).

What each party learns:
  - both: the other's number of distinct ids, hence B and the bounds; nothing about
    how many ids fall in each bucket (every bucket's OKVS has M entries and hides
    its key count; every bucket's VALUES has m_B values);
  - the receiver: which of its ids are in the intersection. For x not in Y,
    Decode(P_b, d(x)) + H(x) is non-zero except with probability 2^-128, so F(x)
    hides behind Delta, which R never sees, as the random padding does; S's values
    come shuffled within their bucket;
  - the sender: nothing from P_b + A_b (A_b is a uniform VOLE output S does not know);
    if it is in result_to, the intersection, which R tells it bucket by bucket (so
    also how many common ids each bucket holds, which the intersection gives anyway);
  - a false match has probability <= 2^-stat_sec (truncation; a padding value matching
    is one), an OKVS failure (a local re-seed) <= 2^-stat_sec, a bucket over its bound
    (the run stops) <= 2^-stat_sec per party.
Raw ids and their plain digests never leave a party: only VOLE messages, the masked
OKVS and truncated OPRF values. A party's spill files (a private folder under
``spill_dir``, removed when the run ends or fails) hold digests under the run's key,
which is never written, and input positions: no id.

Result order: both result parties list the common ids (first occurrence of each) bucket
by bucket, in the order of the sender's shuffled wire positions within a bucket, which
both hold and which says nothing about either party's input order.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from veil import messages as msg
from veil.errors import ConfigError, ProtocolError
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy
from veil.protocols.psi import aeshash, buckets, gf128, okvs, vole
from veil.protocols.psi.common import (
    STATISTICAL_BITS,
    TRUNCATION_SPECS,
    Outbox,
    Protocol,
    PsiParams,
    PsiResult,
    check_params,
    exchange_oprf_sizes,
    hello_schema,
    kept_bits,
    oprf_receiver,
    secure_permutation,
)

match = buckets.match  # the per-bucket match (kept here: callers import it from rr22)

PROTOCOL = "rr22"
PROTOCOL_VERSION = 3  # 2: SETUP before HELLO; 3: buckets
BUCKET_TARGET = 1 << 19  # the most ids in a padded bucket (part of the protocol version)
ROWS_PER_MESSAGE = 1 << 16  # OKVS rows (16 bytes each) per MASKED message: 1 MiB
VALUES_PER_MESSAGE = 1 << 17
OKVS_RETRIES = 4


class Tag(StrEnum):
    """Every message of this protocol (the VOLE's own live under the scope ``vole``)."""

    HELLO = "hello"  # sizes and parameters, both directions
    SETUP = "setup"  # R -> S: the run's hashing seed
    OKVS = "okvs"  # R -> S: a bucket's OKVS seed
    MASKED = "masked"  # R -> S: a chunk of a bucket's P + A
    VALUES = "values"  # S -> R: a batch of a bucket's truncated OPRF values, shuffled
    RESULT = "result"  # R -> S: a bucket's wire positions of the matched values, ascending


HELLO = hello_schema(**TRUNCATION_SPECS)
SETUP = msg.Record({"seed": msg.Blob(16)})
OKVS = msg.Record({"seed": msg.Blob(okvs.SEED_BYTES)})
# MASKED: msg.Array("uint64", (rows, 2)); VALUES: msg.Blob(count * w);
# RESULT (per bucket): msg.Array("int64", max_len=m_B, lo=0, hi=m_B - 1) -- from HELLO.


def value_bytes(n: int, m: int, truncate_bits: int | None, stat_sec: int = STATISTICAL_BITS) -> int:
    """Bytes kept of each OPRF value: 8w >= stat_sec + log2(n m) (and >= 64 bits)."""
    return min(math.ceil(kept_bits(n, m, truncate_bits, stat_sec=stat_sec) / 8), 16)


def run_psi(
    session: Session,
    ids: Iterable[str] | Sequence[str],
    params: PsiParams,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> PsiResult:
    """Play OPRF receiver or sender as ``params.result_to`` says (:func:`oprf_receiver`)."""
    check_params(session, params, policy, Protocol.RR22)
    if session.me == oprf_receiver(session, params):
        return run_oprf_receiver(session, ids, params, policy=policy)
    return run_oprf_sender(session, ids, params, policy=policy)


@dataclass(frozen=True)
class _Plan:
    peer: str
    n: int  # receiver's distinct ids
    m: int  # sender's distinct ids
    width: int  # bytes per OPRF value
    buckets: int  # B
    bound_n: int  # the receiver's padded bucket
    bound_m: int  # the sender's padded bucket: VALUES per bucket
    okvs: okvs.OkvsParams  # each bucket's OKVS (and the VOLE's length per bucket, okvs.m)
    stat_sec: int


@dataclass(frozen=True)
class _Keys:
    digest: bytes
    h: bytes
    out: bytes


def _keys(seed: bytes) -> _Keys:
    def derive(label: bytes) -> bytes:
        return hashlib.blake2b(seed, digest_size=16, person=b"veil-rr22-" + label).digest()

    return _Keys(derive(b"id"), derive(b"h"), derive(b"out"))


def _handshake(
    session: Session, params: PsiParams, mine_n: int, receiver: bool, stat_sec: int
) -> _Plan:
    peer, n, m = exchange_oprf_sizes(
        session,
        params,
        protocol=PROTOCOL,
        version=PROTOCOL_VERSION,
        tag=Tag.HELLO,
        schema=HELLO,
        mine_n=mine_n,
        receiver=receiver,
        stat_sec=stat_sec,
    )
    width = value_bytes(n, m, params.truncate_bits, stat_sec)
    count = buckets.bucket_count(n, m, stat_sec, BUCKET_TARGET)
    bn, bm = (buckets.bound(x, count, stat_sec) for x in (n, m))
    table = okvs.params_for(bn, stat_bits=stat_sec)
    return _Plan(peer, n, m, width, count, bn, bm, table, stat_sec)


def _bucket_starts(held: buckets.HeldIds, plan: _Plan, bound: int) -> np.ndarray:
    """Where each bucket starts among the distinct ids; a ProtocolError if a bucket holds
    more ids than its public bound (probability <= 2^-stat_sec)."""
    starts = held.bucket_offsets(plan.buckets)
    over = np.flatnonzero(np.diff(starts) > bound)
    if len(over):
        raise ProtocolError(
            f"bucket {over[0]} of {plan.buckets} holds more than its bound of {bound} ids "
            f"(probability <= 2^-{plan.stat_sec}): run again"
        )
    return starts


def _masks(width: int) -> np.ndarray:
    """The (2,) uint64 mask that keeps the first ``width`` bytes of a 16-byte value."""
    bits = [min(max(8 * width - 64 * i, 0), 64) for i in (0, 1)]
    return np.array([(1 << b) - 1 for b in bits], dtype=np.uint64)


def _evaluate(
    table: np.ndarray,
    digests: np.ndarray,
    okvs_seed: bytes,
    plan: _Plan,
    keys: _Keys,
    *,
    delta: np.ndarray | None = None,
) -> np.ndarray:
    """Each id's OPRF value MMO(Decode(table, d(x)) [+ Delta * H(x)]), truncated to
    ``plan.width`` bytes (the rest zero): (count, 2) uint64. By chunks of ids, so the
    decoder's temporaries stay small."""
    out = np.empty_like(digests)
    for lo in range(0, len(digests), aeshash.CHUNK):
        d = digests[lo : lo + aeshash.CHUNK]
        v = okvs.decode(table, d.view(np.uint8).reshape(-1, 16), okvs_seed, plan.okvs)
        if delta is not None:  # the sender: K = C + Delta * P, so add Delta * H(x)
            v ^= gf128.mul_const(aeshash.mmo(keys.h, d), delta)
        out[lo : lo + aeshash.CHUNK] = aeshash.mmo(keys.out, v) & _masks(plan.width)
    return out


# -- receiver --------------------------------------------------------------------------


def run_oprf_receiver(
    session: Session,
    ids: Iterable[str] | Sequence[str],
    params: PsiParams,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> PsiResult:
    """OPRF receiver role: computes which of ``ids`` the peer also holds (and tells the
    peer if it is in ``result_to``)."""
    check_params(session, params, policy, Protocol.RR22)
    if session.me != oprf_receiver(session, params):
        raise ConfigError(
            "result_to", f"'{session.me}' is not the RR22 receiver of {params.result_to}"
        )
    seed = secrets.token_bytes(16)
    session.send(session.peers()[0], Tag.SETUP, {"seed": seed})
    keys = _keys(seed)
    with buckets.hold_ids(ids, keys.digest, params.spill_dir) as held:
        return _receive(session, params, policy, keys, held)


def _receive(
    session: Session,
    params: PsiParams,
    policy: SecurityPolicy,
    keys: _Keys,
    held: buckets.HeldIds,
) -> PsiResult:
    """The receiver's run from HELLO on, over its held ids."""
    plan = _handshake(session, params, len(held), True, policy.stat_sec)
    if plan.n == 0 or plan.m == 0:
        return PsiResult(np.zeros(0, dtype=np.int64), 0, held.n_input, plan.n, plan.m)
    _bucket_starts(held, plan, plan.bound_n)
    sizes = [plan.okvs.m] * plan.buckets
    voles = vole.vole_receiver_chunks(session.sub("vole"), sizes, policy=policy)
    found: list[np.ndarray] = []  # per bucket: the input positions of the matched ids
    pending: tuple[np.ndarray, np.ndarray] | None = None  # the last bucket's values, ids
    with Outbox(session, plan.peer) as out:
        tell = out if plan.peer in params.result_to else None
        for b in range(plan.buckets):
            d, rows = held.bucket(b, plan.buckets)
            okvs_seed, p = _encode(d, aeshash.mmo(keys.h, d), plan.okvs)
            corr = next(voles)
            out.send(Tag.OKVS, {"seed": okvs_seed})
            for lo in range(0, plan.okvs.m, ROWS_PER_MESSAGE):
                hi = min(lo + ROWS_PER_MESSAGE, plan.okvs.m)
                out.send(Tag.MASKED, p[lo:hi] ^ corr.a[lo:hi])
            del p
            own = _evaluate(corr.c, d, okvs_seed, plan, keys)
            del corr, d
            if pending is not None:  # a bucket behind: the peer's values are there by now
                found.append(_match_bucket(session, plan, tell, *pending))
            pending = (own, rows)
            session.progress("psi", (b + 1) / plan.buckets)
        if pending is not None:
            found.append(_match_bucket(session, plan, tell, *pending))
    indices = np.concatenate(found, dtype=np.int64)
    return PsiResult(indices, len(indices), held.n_input, plan.n, plan.m)


def _encode(
    digests: np.ndarray, values: np.ndarray, params: okvs.OkvsParams
) -> tuple[bytes, np.ndarray]:
    """A bucket's OKVS: its ``len(digests)`` <= params.n keys into params.m entries."""
    keys_u8 = digests.view(np.uint8).reshape(-1, 16)
    fewer = replace(params, n=len(digests))  # same m: fewer keys only fail less often
    for _ in range(OKVS_RETRIES):  # each try fails with probability <= 2^-stat_sec
        seed = secrets.token_bytes(okvs.SEED_BYTES)
        try:
            return seed, okvs.encode(keys_u8, values, seed, fewer)
        except okvs.OkvsFailure:
            continue
    raise ProtocolError(f"the OKVS of {len(keys_u8)} ids failed {OKVS_RETRIES} times")


def _match_bucket(
    session: Session, plan: _Plan, tell: Outbox | None, own: np.ndarray, ids: np.ndarray
) -> np.ndarray:
    """The input positions of the receiver's ids matched in the next bucket, in the order
    of their wire positions there, which go to the peer in RESULT if ``tell``."""
    hits, at = buckets.match(own, _recv_values(session, plan))
    if tell is not None:
        tell.send(Tag.RESULT, at)
    out: np.ndarray = ids[hits]
    return out


def _recv_values(session: Session, plan: _Plan) -> np.ndarray:
    """A bucket's values from the sender, zero-padded to (m_B, 2) uint64 like
    :func:`_evaluate`'s."""
    m = plan.bound_m
    out = np.zeros((m, 2), dtype=np.uint64)
    as_bytes = out.view(np.uint8).reshape(m, 16)
    for lo in range(0, m, VALUES_PER_MESSAGE):
        hi = min(lo + VALUES_PER_MESSAGE, m)
        got = msg.recv(session, plan.peer, Tag.VALUES, msg.Blob((hi - lo) * plan.width))
        as_bytes[lo:hi, : plan.width] = np.frombuffer(got, np.uint8).reshape(hi - lo, -1)
    return out


# -- sender ----------------------------------------------------------------------------


def run_oprf_sender(
    session: Session,
    ids: Iterable[str] | Sequence[str],
    params: PsiParams,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> PsiResult:
    """OPRF sender role: holds the OPRF key; learns the intersection only if in
    ``result_to`` (the OPRF receiver tells it)."""
    check_params(session, params, policy, Protocol.RR22)
    if session.me == oprf_receiver(session, params):
        raise ConfigError("result_to", f"'{session.me}' is the RR22 receiver of {params.result_to}")
    peer = session.peers()[0]
    keys = _keys(msg.field(msg.recv(session, peer, Tag.SETUP, SETUP), Tag.SETUP, "seed", bytes))
    with buckets.hold_ids(ids, keys.digest, params.spill_dir) as held:
        return _send(session, params, policy, keys, held)


def _send(
    session: Session,
    params: PsiParams,
    policy: SecurityPolicy,
    keys: _Keys,
    held: buckets.HeldIds,
) -> PsiResult:
    """The sender's run from HELLO on, over its held ids."""
    peer, n_input = session.peers()[0], held.n_input
    plan = _handshake(session, params, len(held), False, policy.stat_sec)
    me_learns = session.me in params.result_to
    if plan.n == 0 or plan.m == 0:
        empty = np.zeros(0, dtype=np.int64) if me_learns else None
        return PsiResult(empty, 0 if me_learns else None, n_input, plan.m, plan.n)
    _bucket_starts(held, plan, plan.bound_m)
    sizes = [plan.okvs.m] * plan.buckets
    voles = vole.vole_sender_chunks(session.sub("vole"), sizes, policy=policy)
    spec = msg.Array("int64", max_len=plan.bound_m, lo=0, hi=plan.bound_m - 1)
    kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # bucket: wire positions, ids
    found: list[np.ndarray] = []

    def learn(b: int) -> None:  # RESULT of bucket b: the wire positions R matched there
        found.append(buckets.learned(msg.recv(session, peer, Tag.RESULT, spec), *kept.pop(b)))

    with Outbox(session, plan.peer) as out:
        for b in range(plan.buckets):
            d, rows = held.bucket(b, plan.buckets)
            values = _sender_bucket(session, plan, keys, d, next(voles))
            perm = secure_permutation(plan.bound_m)  # wire position -> padded row
            shuffled = _padded(values, plan)[perm]
            for v in range(0, plan.bound_m, VALUES_PER_MESSAGE):
                out.send(Tag.VALUES, shuffled[v : v + VALUES_PER_MESSAGE].tobytes())
            del values, shuffled, d
            if me_learns:
                real = np.flatnonzero(perm < len(rows))  # the wire positions of real ids
                kept[b] = (real, rows[perm[real]])
                if b >= 2:  # R sent RESULT(b - 2) before MASKED(b): no wait
                    learn(b - 2)
            session.progress("psi", (b + 1) / plan.buckets)
    held.close()
    if not me_learns:
        return PsiResult(None, None, n_input, plan.m, plan.n)
    for b in sorted(kept):
        learn(b)
    indices = np.concatenate(found, dtype=np.int64)
    return PsiResult(indices, len(indices), n_input, plan.m, plan.n)


def _sender_bucket(
    session: Session, plan: _Plan, keys: _Keys, digests: np.ndarray, corr: vole.VoleSender
) -> np.ndarray:
    """A bucket's OPRF values for its ids: K = B + Delta * (P + A) from the MASKED
    messages, then :func:`_evaluate` under Delta."""
    seed = msg.field(msg.recv(session, plan.peer, Tag.OKVS, OKVS), Tag.OKVS, "seed", bytes)
    k = corr.b  # becomes K, chunk by chunk
    for lo in range(0, plan.okvs.m, ROWS_PER_MESSAGE):
        hi = min(lo + ROWS_PER_MESSAGE, plan.okvs.m)
        masked = msg.recv(session, plan.peer, Tag.MASKED, msg.Array("uint64", (hi - lo, 2)))
        k[lo:hi] ^= gf128.mul_const(masked, corr.delta)
    return _evaluate(k, digests, seed, plan, keys, delta=corr.delta)


def _padded(values: np.ndarray, plan: _Plan) -> np.ndarray:
    """(m_B, w) uint8: the values' first w bytes, then uniformly random w-byte rows."""
    out = np.empty((plan.bound_m, plan.width), dtype=np.uint8)
    out[: len(values)] = values.view(np.uint8).reshape(-1, 16)[:, : plan.width]
    pad = (plan.bound_m - len(values)) * plan.width
    out[len(values) :] = np.frombuffer(secrets.token_bytes(pad), np.uint8).reshape(-1, plan.width)
    return out
