"""RR22-PSI: two parties, semi-honest, from an OPRF built on VOLE and an OKVS.

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

Roles: the OPRF ``receiver`` R (VOLE receiver) computes the intersection; the OPRF
``sender`` S (VOLE sender) holds the OPRF key Delta. The OPRF receiver is the first
party of ``result_to`` in the job's party order; if the other party is in
``result_to`` too, R tells it the result (step 5), as in :mod:`.kkrt`.

Flow (R with n distinct ids Y, S with m distinct ids X; M = okvs.params_for(n).m):
  0. R -> S   SETUP: a fresh 16-byte seed; both derive the digest, H and output keys,
              and hash their ids to digests chunk by chunk (:class:`IdChunks` streams;
              the ids are never held as a whole), de-duplicated on the digests.
  1. R <-> S  HELLO: protocol, version, number of distinct ids, result_to,
              truncate_bits, stat_sec (both must agree). An empty side ends it here.
  2. R        encodes P = Encode({(d(y), H(y)) : y in Y}) into M entries of GF(2^128)
              (re-seeding the OKVS locally in the <= 2^-stat_sec event that it fails).
  3. R <-> S  VOLE of length M: S gets Delta and B, R gets A and C = B + A * Delta.
  4. R -> S   OKVS: the OKVS seed; then MASKED: P + A, by chunks.
     S        K = B + Delta * (P + A) = C + Delta * P, and for each x in X the value
              F(x) = MMO(Decode(K, d(x)) + Delta * H(x)), truncated to w bytes,
              8w >= stat_sec + log2(n m).
     S -> R   VALUES: the m values in an order shuffled by a secure permutation.
  5. R        F(y) = MMO(Decode(C, d(y))) for its ids (= S's value when y is in X);
              the ids whose value is among S's values are the intersection.
     R -> S   RESULT (only if S is in result_to): the wire positions of the matched
              values, ascending (the order both parties report).

What each party learns:
  - both: the other's number of distinct ids (M is a function of n);
  - the receiver: which of its ids are in the intersection. For x not in Y,
    Decode(P, d(x)) + H(x) is non-zero except with probability 2^-128, so F(x) hides
    behind Delta, which R never sees; S's values come shuffled;
  - the sender: nothing from P + A (A is a uniform VOLE output S does not know); if it
    is in result_to, the intersection, which R tells it;
  - a false match has probability <= 2^-stat_sec (truncation), an OKVS failure (a local
    re-seed) <= 2^-stat_sec.
Raw ids and their plain digests never leave a party: only VOLE messages, the masked
OKVS and truncated OPRF values.

Result order: both result parties list the common ids (first occurrence of each) in the
order of the sender's shuffled wire positions, which both hold and which says nothing
about either party's input order.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from veil import messages as msg
from veil.errors import ConfigError, ProtocolError
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy
from veil.protocols.psi import aeshash, gf128, okvs, vole
from veil.protocols.psi.common import (
    STATISTICAL_BITS,
    TRUNCATION_SPECS,
    Outbox,
    Protocol,
    PsiParams,
    PsiResult,
    check_params,
    encode_ids,
    exchange_oprf_sizes,
    hello_schema,
    kept_bits,
    oprf_receiver,
    secure_permutation,
)
from veil.protocols.psi.ecdh import id_chunks

PROTOCOL = "rr22"
PROTOCOL_VERSION = 2  # 2: SETUP before HELLO
ROWS_PER_MESSAGE = 1 << 16  # OKVS rows (16 bytes each) per MASKED message: 1 MiB
VALUES_PER_MESSAGE = 1 << 17
OKVS_RETRIES = 4


class Tag(StrEnum):
    """Every message of this protocol (the VOLE's own live under the scope ``vole``)."""

    HELLO = "hello"  # sizes and parameters, both directions
    SETUP = "setup"  # R -> S: the run's hashing seed
    OKVS = "okvs"  # R -> S: the OKVS seed
    MASKED = "masked"  # R -> S: a chunk of P + A
    VALUES = "values"  # S -> R: a batch of truncated OPRF values, shuffled
    RESULT = "result"  # R -> S: wire positions of the matched values, ascending


HELLO = hello_schema(**TRUNCATION_SPECS)
SETUP = msg.Record({"seed": msg.Blob(16)})
OKVS = msg.Record({"seed": msg.Blob(okvs.SEED_BYTES)})
# MASKED: msg.Array("uint64", (rows, 2)); VALUES: msg.Blob(count * w);
# RESULT: msg.Array("int64", max_len=m, lo=0, hi=m-1) -- sizes from HELLO.


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
    okvs: okvs.OkvsParams  # the receiver's OKVS (and the VOLE's length, okvs.m)


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
    return _Plan(peer, n, m, width, okvs.params_for(n, stat_bits=stat_sec))


def _hashed_ids(
    ids: Iterable[str] | Sequence[str], key: bytes
) -> tuple[np.ndarray, np.ndarray, int]:
    """(the (n, 2) uint64 digests of the distinct ids, their input positions (first
    occurrence, ascending), the number of input ids), hashing chunk by chunk so that
    only the compact digests are kept, never the ids."""
    parts: list[np.ndarray] = []
    n_input = 0
    for chunk in id_chunks(ids, aeshash.CHUNK):
        raw = encode_ids(chunk, start=n_input)
        parts.append(aeshash.id_digests(raw, key))
        n_input += len(raw)
        del raw
    digests = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.uint64)
    del parts
    distinct = _first_rows(digests)
    if len(distinct) < len(digests):
        digests = digests[distinct]
    return digests, distinct, n_input


def _first_rows(d: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct row of ``d`` ((n, 2) uint64),
    ascending: a hash on the low words, exact on both words where low words repeat."""
    if len(d) == 0:
        return np.zeros(0, dtype=np.int64)
    low = pd.Index(d[:, 0])
    dup = np.array(low.duplicated(keep="first"))
    if dup.any():
        same = np.flatnonzero(low.duplicated(keep=False))
        pairs = pd.MultiIndex.from_arrays([d[same, 0], d[same, 1]])
        dup[same] = pairs.duplicated(keep="first")
    del low
    return np.flatnonzero(~dup).astype(np.int64)


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
    digests, distinct, n_input = _hashed_ids(ids, keys.digest)
    plan = _handshake(session, params, len(distinct), True, policy.stat_sec)
    if plan.n == 0 or plan.m == 0:
        return PsiResult(np.zeros(0, dtype=np.int64), 0, n_input, plan.n, plan.m)
    keys_u8 = digests.view(np.uint8).reshape(-1, 16)
    okvs_seed, p = _encode(keys_u8, aeshash.mmo(keys.h, digests), plan.okvs)
    session.progress("psi", 0.2)
    corr = vole.vole_receiver(session.sub("vole"), plan.okvs.m, policy=policy)
    session.progress("psi", 0.6)
    with Outbox(session, plan.peer) as out:
        out.send(Tag.OKVS, {"seed": okvs_seed})
        for lo in range(0, plan.okvs.m, ROWS_PER_MESSAGE):
            hi = min(lo + ROWS_PER_MESSAGE, plan.okvs.m)
            out.send(Tag.MASKED, p[lo:hi] ^ corr.a[lo:hi])
    del p
    own = _evaluate(corr.c, digests, okvs_seed, plan, keys)
    del corr, digests
    theirs = _recv_values(session, plan)
    hits, positions = match(own, theirs)
    if plan.peer in params.result_to:
        session.send(plan.peer, Tag.RESULT, positions)
    indices = distinct[hits]
    return PsiResult(indices, len(indices), n_input, plan.n, plan.m)


def _encode(
    keys_u8: np.ndarray, values: np.ndarray, params: okvs.OkvsParams
) -> tuple[bytes, np.ndarray]:
    for _ in range(OKVS_RETRIES):  # each try fails with probability <= 2^-stat_sec
        seed = secrets.token_bytes(okvs.SEED_BYTES)
        try:
            return seed, okvs.encode(keys_u8, values, seed, params)
        except okvs.OkvsFailure:
            continue
    raise ProtocolError(f"the OKVS of {len(keys_u8)} ids failed {OKVS_RETRIES} times")


def _recv_values(session: Session, plan: _Plan) -> np.ndarray:
    """The sender's values, zero-padded to (m, 2) uint64 like :func:`_evaluate`'s."""
    out = np.zeros((plan.m, 2), dtype=np.uint64)
    as_bytes = out.view(np.uint8).reshape(plan.m, 16)
    for lo in range(0, plan.m, VALUES_PER_MESSAGE):
        hi = min(lo + VALUES_PER_MESSAGE, plan.m)
        got = msg.recv(session, plan.peer, Tag.VALUES, msg.Blob((hi - lo) * plan.width))
        as_bytes[lo:hi, : plan.width] = np.frombuffer(got, np.uint8).reshape(hi - lo, -1)
        session.progress("psi", 0.6 + 0.4 * hi / plan.m)
    return out


def match(own: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``own`` found among the rows of ``theirs``, the row of ``theirs`` each
    matched), in ascending order of the latter: the sender's shuffled wire order, which
    both parties report and which says nothing about the receiver's input order.
    ``own`` and ``theirs`` are (count, 2) uint64; a hash join on the low words (the
    values are pseudorandom), exact on the high words."""
    o1, o2 = own[:, 0], own[:, 1]
    t1, t2 = theirs[:, 0], theirs[:, 1]
    index = pd.Index(t1)
    if index.is_unique:
        at = index.get_indexer(o1)
        found = np.flatnonzero(at >= 0)
        found = found[t2[at[found]] == o2[found]]
        at = at[found]
    else:  # two of the peer's values share 8 bytes: about (m^2 / 2^65), still exact
        found, at = _match_sorted(o1, o2, t1, t2)
    owner = np.full(len(theirs), -1, dtype=np.int64)  # theirs row -> own row (linear sort)
    owner[at] = found  # a row of theirs matches at most one own row: own rows are distinct
    positions = np.flatnonzero(owner >= 0)
    return owner[positions], positions


def _match_sorted(
    o1: np.ndarray, o2: np.ndarray, t1: np.ndarray, t2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((t2, t1))
    s1, s2 = t1[order], t2[order]
    lo = np.searchsorted(s1, o1, side="left")
    hi = np.searchsorted(s1, o1, side="right")
    for i in np.flatnonzero(hi - lo > 1).tolist():  # same first word: search the second
        lo[i] += np.searchsorted(s2[lo[i] : hi[i]], o2[i])
    at = np.minimum(lo, max(len(s1) - 1, 0))
    hit = (lo < hi) & (s2[at] == o2) if len(s2) else np.zeros(len(o1), dtype=bool)
    found = np.flatnonzero(hit)
    return found, order[at[found]]


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
    digests, distinct, n_input = _hashed_ids(ids, keys.digest)
    plan = _handshake(session, params, len(distinct), False, policy.stat_sec)
    me_learns = session.me in params.result_to
    if plan.n == 0 or plan.m == 0:
        empty = np.zeros(0, dtype=np.int64) if me_learns else None
        return PsiResult(empty, 0 if me_learns else None, n_input, plan.m, plan.n)
    perm = secure_permutation(plan.m)  # wire position -> id
    corr = vole.vole_sender(session.sub("vole"), plan.okvs.m, policy=policy)
    session.progress("psi", 0.5)
    okvs_seed = msg.field(msg.recv(session, plan.peer, Tag.OKVS, OKVS), Tag.OKVS, "seed", bytes)
    k = corr.b  # becomes K = B + Delta * (P + A), chunk by chunk
    for lo in range(0, plan.okvs.m, ROWS_PER_MESSAGE):
        hi = min(lo + ROWS_PER_MESSAGE, plan.okvs.m)
        masked = msg.recv(session, plan.peer, Tag.MASKED, msg.Array("uint64", (hi - lo, 2)))
        k[lo:hi] ^= gf128.mul_const(masked, corr.delta)
    session.progress("psi", 0.8)
    delta = corr.delta
    del corr
    values = _evaluate(k, digests, okvs_seed, plan, keys, delta=delta)
    del k, digests
    as_bytes = values.view(np.uint8).reshape(-1, 16)
    with Outbox(session, plan.peer) as out:
        for lo in range(0, plan.m, VALUES_PER_MESSAGE):
            batch = as_bytes[perm[lo : lo + VALUES_PER_MESSAGE], : plan.width]
            out.send(Tag.VALUES, batch.tobytes())
    del values, as_bytes
    session.progress("psi", 1.0)
    if not me_learns:
        return PsiResult(None, None, n_input, plan.m, plan.n)
    spec = msg.Array("int64", max_len=plan.m, lo=0, hi=plan.m - 1)
    pos = msg.recv(session, plan.peer, Tag.RESULT, spec)
    items = perm[pos]
    del perm
    if (
        len(pos) > 1 and not (np.diff(np.asarray(pos, dtype=np.int64)) > 0).all()
    ):  # repeats: first kept
        _, first = np.unique(items, return_index=True)
        items = items[np.sort(first)]
    indices = distinct[items]
    return PsiResult(indices, len(indices), n_input, plan.m, plan.n)
