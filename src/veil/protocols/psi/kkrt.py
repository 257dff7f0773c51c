"""KKRT-PSI: two parties, semi-honest, from a batched OPRF on OT extension.

[Kolesnikov, Kumaresan, Rosulek, Trieu, "Efficient Batched Oblivious PRF with
Applications to Private Set Intersection", CCS 2016 (KKRT16)]; hashing after
[Pinkas, Schneider, Zohner, USENIX Security 2014 / ToPS 2018 (PSZ)]. Primitives and
their parameters: :mod:`veil.protocols.psi.ot` (base OTs, OT extension, code width 512),
:mod:`veil.protocols.psi.cuckoo` (3 hash functions, bins for failure <= 2^-40).

Roles: the OPRF ``receiver`` computes the intersection; the OPRF ``sender`` holds the
OPRF key. ``result_to`` means what it means in every PSI protocol: each party it names
ends with the intersection. The OPRF receiver is the first party of ``result_to`` in
the job's party order; if the other party is in ``result_to`` too, the OPRF receiver
tells it the result (step 5), so both receive the same intersection in the same order.

Flow (receiver R with n distinct ids, sender S with m):
  0. R <-> S  HELLO: protocol, version, number of distinct ids, result_to, truncate_bits
              (both must agree, else both stop with a ConfigError). An empty side ends it.
  1. R -> S   SETUP: a fresh hash seed, the number of bins B, and R's base-OT point A.
              R has already cuckoo-hashed its ids into the B bins under that seed
              (re-seeding locally in the <= 2^-40 event that they do not fit).
  2. S -> R   BASE_OT: S's 512 base-OT points (its choice bits s) and the code key.
  3. R -> S   OT_EXT: u = G(k^0) ^ G(k^1) ^ C(bin contents), by chunks of rows.
  4. S        evaluates, for every id y and each hash index i, the OPRF at bin h_i(y):
              H(b, q_b ^ (C(y, i) & s)), truncated to t bytes, 8t >= 40 + log2(3nm).
     S -> R   VALUES: all 3m values in an order shuffled with a secure permutation.
  5. R        computes H(b, t_b) for each of its ids; the ids whose value is among S's
              values are the intersection.
     R -> S   RESULT (only if S is in result_to): the positions of the matched values,
              in the order of the matched values (the order both parties report).

What each party learns:
  - both: the other's number of distinct ids (and the bin count, a function of n);
  - the receiver: which of its ids are in the intersection; S's values are pseudorandom
    for ids outside it and come shuffled, so nothing else about S's ids;
  - the sender: nothing from the OT extension (u is masked by a PRG stream it cannot
    compute); if it is in result_to, the intersection, which R tells it;
  - a false match has probability <= 2^-40 (truncation), a hashing failure <= 2^-40.
Raw ids and plain hashes never leave a party: only curve points, masked OT columns and
truncated OPRF values.

Where the work runs: the per-row kernels (the OPRF output hashes, and the sender's code
words) go through this party's engine (:mod:`.kernels`: this process by default, or its
own Ray cluster), chunk by chunk in order, so the bytes are the same; the OT extension's
key streams stay in the protocol's process.

Result order: each result party's ``indices`` list the common ids (first occurrence) in
the order of their OPRF values, which both hold, so two result parties agree.
"""

from __future__ import annotations

import contextlib
import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from veil import messages as msg
from veil.errors import ConfigError, ProtocolError
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy
from veil.protocols.psi import cuckoo, ot
from veil.protocols.psi.common import (
    MAX_IDS,
    STATISTICAL_BITS,
    TRUNCATION_SPECS,
    Outbox,
    Protocol,
    PsiParams,
    PsiResult,
    check_params,
    distinct_ids,
    exchange_oprf_sizes,
    hello_schema,
    kept_bits,
    oprf_receiver,
    secure_permutation,
)
from veil.protocols.psi.kernels import (
    OprfSenderKey,
    open_point_kernels,
    oprf_receiver_values,
    oprf_sender_values,
)

PROTOCOL = "kkrt"
PROTOCOL_VERSION = 2  # 2: HELLO carries stat_sec
CHUNK_ROWS = 1 << 15  # OT-extension rows per message (2 MiB); a multiple of ot.ROW_ALIGN
VALUES_PER_MESSAGE = 1 << 16
MAX_BIN_FACTOR = 256  # a sender refuses a bin count above this many per id (+ 512)
SEED_RETRIES = 4
_OPRF_PERSON = b"veil-kkrt-oprf"


class Tag(StrEnum):
    """Every message of this protocol."""

    HELLO = "hello"  # sizes and parameters, both directions
    SETUP = "setup"  # R -> S: hash seed, bin count, base-OT point A
    BASE_OT = "base_ot"  # S -> R: 512 base-OT points, code key
    OT_EXT = "ot_ext"  # R -> S: a chunk of OT-extension columns
    VALUES = "values"  # S -> R: a batch of truncated OPRF values, shuffled
    RESULT = "result"  # R -> S: positions of the matched values, in the shared order


HELLO = hello_schema(**TRUNCATION_SPECS)
SETUP = msg.Record(
    {"seed": msg.Blob(16), "bins": msg.Int(1, MAX_IDS), "point": msg.Blob(ot.POINT_BYTES)}
)
BASE_OT = msg.Record(
    {"points": msg.Blob(ot.WIDTH * ot.POINT_BYTES), "code_key": msg.Blob(ot.KEY_BYTES)}
)
# OT_EXT: msg.Array("uint8", (WIDTH, rows / 8)); VALUES: msg.Blob(count * width);
# RESULT: msg.Array("int64", max_len=3m, lo=0, hi=3m-1) -- sizes from HELLO and SETUP.


def value_bytes(n: int, m: int, truncate_bits: int | None, stat_sec: int = STATISTICAL_BITS) -> int:
    """Bytes kept of each OPRF value: 8t >= stat_sec + log2(3 n m) (and >= 64 bits);
    each receiver value meets the sender's under 3 hash functions."""
    return math.ceil(kept_bits(n, m, truncate_bits, pairs=3, stat_sec=stat_sec) / 8)


def run_psi(
    session: Session,
    ids: Iterable[str] | Sequence[str],
    params: PsiParams,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> PsiResult:
    """Play OPRF receiver or sender as ``params.result_to`` says (:func:`oprf_receiver`)."""
    check_params(session, params, policy, Protocol.KKRT)
    if session.me == oprf_receiver(session, params):
        return run_oprf_receiver(session, ids, params, policy=policy)
    return run_oprf_sender(session, ids, params, policy=policy)


@dataclass(frozen=True)
class _Plan:
    peer: str
    n: int  # receiver's distinct ids
    m: int  # sender's distinct ids
    width: int  # bytes per OPRF value
    stat_sec: int  # the policy's statistical security parameter


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
    return _Plan(peer, n, m, value_bytes(n, m, params.truncate_bits, stat_sec), stat_sec)


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
    check_params(session, params, policy, Protocol.KKRT)
    if session.me != oprf_receiver(session, params):
        raise ConfigError(
            "result_to", f"'{session.me}' is not the KKRT receiver of {params.result_to}"
        )
    raw, distinct = distinct_ids(ids)
    plan = _handshake(session, params, len(distinct), True, policy.stat_sec)
    peer_learns = plan.peer in params.result_to
    if plan.n == 0 or plan.m == 0:
        return PsiResult(np.zeros(0, dtype=np.int64), 0, len(raw), plan.n, plan.m)
    items = [raw[j] for j in distinct]
    seed, bins, tags, table, which = _cuckoo(items, plan.stat_sec)
    base = ot.BaseOtSender()
    session.send(plan.peer, Tag.SETUP, {"seed": seed, "bins": bins, "point": base.message})
    reply = msg.recv(session, plan.peer, Tag.BASE_OT, BASE_OT)
    code_key = msg.field(reply, Tag.BASE_OT, "code_key", bytes)
    oprf = ot.OprfReceiver(base.keys(msg.field(reply, Tag.BASE_OT, "points", bytes), ot.WIDTH))
    own = np.empty((plan.n, plan.width), dtype=np.uint8)  # this party's OPRF value per id
    kernels = open_point_kernels(params.threads)  # this party's engine (local by default)
    with contextlib.closing(kernels), Outbox(session, plan.peer) as out:
        for lo in range(0, bins, CHUNK_ROWS):
            hi = min(lo + CHUNK_ROWS, bins)
            rows = np.zeros((hi - lo, ot.ROW_BYTES), dtype=np.uint8)
            occ = np.flatnonzero(table[lo:hi] >= 0)
            who = table[lo:hi][occ]
            rows[occ] = ot.code_words(code_key, tags[who], which[lo:hi][occ])
            u, t_rows = oprf.chunk(rows)
            out.send(Tag.OT_EXT, u)
            t_occ, at = t_rows[occ], lo + occ
            cuts = kernels.split(len(occ))
            args = [(t_occ[a:b], at[a:b], plan.width, _OPRF_PERSON) for a, b in cuts]
            vals = b"".join(kernels.map_chunks(oprf_receiver_values, args))
            own[who] = np.frombuffer(vals, dtype=np.uint8).reshape(-1, plan.width)
            session.progress("psi", 0.5 * hi / bins)
    theirs = _recv_values(session, plan)
    hits, positions = _match(own, theirs, plan.width)
    if peer_learns:
        session.send(plan.peer, Tag.RESULT, positions)
    indices = distinct[hits]
    return PsiResult(indices, len(indices), len(raw), plan.n, plan.m)


def _cuckoo(
    items: list[bytes], stat_sec: int
) -> tuple[bytes, int, np.ndarray, np.ndarray, np.ndarray]:
    bins = _align(cuckoo.bin_count(len(items), stat_sec))
    for _ in range(SEED_RETRIES):  # each try fails with probability <= 2^-stat_sec
        seed = secrets.token_bytes(16)
        tags, bin_of = cuckoo.hash_items(items, seed, bins)
        placed = cuckoo.cuckoo_insert(bin_of, bins)
        if placed is not None:
            return seed, bins, tags, placed[0], placed[1]
    raise ProtocolError(f"cuckoo hashing of {len(items)} ids failed {SEED_RETRIES} times")


def _align(bins: int) -> int:
    return -(-bins // ot.ROW_ALIGN) * ot.ROW_ALIGN


def _recv_values(session: Session, plan: _Plan) -> np.ndarray:
    total, parts, got = 3 * plan.m, [], 0
    while got < total:
        expect = min(VALUES_PER_MESSAGE, total - got)
        parts.append(msg.recv(session, plan.peer, Tag.VALUES, msg.Blob(expect * plan.width)))
        got += expect
        session.progress("psi", 0.5 + 0.5 * got / total)
    return np.frombuffer(b"".join(parts), dtype=f"S{plan.width}")


def _match(own: np.ndarray, theirs: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(own rows found among ``theirs``, the position in ``theirs`` of each), both sorted
    by the value (the order both parties report)."""
    mine = own.view(f"S{width}").reshape(-1)
    order = np.argsort(theirs, kind="stable")
    sorted_theirs = theirs[order]
    at = np.searchsorted(sorted_theirs, mine)
    at_c = np.minimum(at, max(len(theirs) - 1, 0))
    found = np.flatnonzero((at < len(theirs)) & (sorted_theirs[at_c] == mine))
    by_value = found[np.argsort(mine[found], kind="stable")]
    return by_value, order[at_c[by_value]].astype(np.int64)


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
    check_params(session, params, policy, Protocol.KKRT)
    if session.me == oprf_receiver(session, params):
        raise ConfigError("result_to", f"'{session.me}' is the KKRT receiver of {params.result_to}")
    raw, distinct = distinct_ids(ids)
    plan = _handshake(session, params, len(distinct), False, policy.stat_sec)
    me_learns = session.me in params.result_to
    if plan.n == 0 or plan.m == 0:
        empty = np.zeros(0, dtype=np.int64) if me_learns else None
        return PsiResult(empty, 0 if me_learns else None, len(raw), plan.m, plan.n)
    seed, bins, a_point = _recv_setup(session, plan)
    tags, bin_of = cuckoo.hash_items([raw[j] for j in distinct], seed, bins)
    s = ot.random_choices()
    points, keys = ot.BaseOtReceiver(np.unpackbits(s)).reply(a_point)
    code_key = secrets.token_bytes(ot.KEY_BYTES)
    session.send(plan.peer, Tag.BASE_OT, {"points": points, "code_key": code_key})
    oprf = ot.OprfSender(keys, s)
    key = OprfSenderKey(code_key, s, plan.width, _OPRF_PERSON)
    entries, entry_bins = cuckoo.simple_hash_order(bin_of)  # entry = 3 * item + hash index
    values = np.empty((3 * plan.m, plan.width), dtype=np.uint8)
    kernels = open_point_kernels(params.threads)  # this party's engine (local by default)
    with contextlib.closing(kernels):
        for lo in range(0, bins, CHUNK_ROWS):
            hi = min(lo + CHUNK_ROWS, bins)
            shape = (ot.WIDTH, (hi - lo) // 8)
            q_rows = oprf.chunk(msg.recv(session, plan.peer, Tag.OT_EXT, msg.Array("uint8", shape)))
            a, b = np.searchsorted(entry_bins, [lo, hi])
            e, eb = entries[a:b], entry_bins[a:b]
            t, i, q = tags[e // 3], (e % 3).astype(np.uint8), q_rows[eb - lo]
            args = [(key, t[x:y], i[x:y], q[x:y], eb[x:y]) for x, y in kernels.split(len(e))]
            vals = b"".join(kernels.map_chunks(oprf_sender_values, args))
            values[e] = np.frombuffer(vals, dtype=np.uint8).reshape(-1, plan.width)
            session.progress("psi", 0.8 * hi / bins)
    perm = secure_permutation(3 * plan.m)  # wire position -> entry
    with Outbox(session, plan.peer) as out:
        for lo in range(0, 3 * plan.m, VALUES_PER_MESSAGE):
            out.send(Tag.VALUES, values[perm[lo : lo + VALUES_PER_MESSAGE]].tobytes())
    session.progress("psi", 1.0)
    if not me_learns:
        return PsiResult(None, None, len(raw), plan.m, plan.n)
    spec = msg.Array("int64", max_len=3 * plan.m, lo=0, hi=3 * plan.m - 1)
    pos = msg.recv(session, plan.peer, Tag.RESULT, spec)
    items = perm[pos] // 3
    _, first = np.unique(items, return_index=True)  # a false match could repeat an id
    indices = distinct[items[np.sort(first)]]
    return PsiResult(indices, len(indices), len(raw), plan.m, plan.n)


def _recv_setup(session: Session, plan: _Plan) -> tuple[bytes, int, bytes]:
    setup = msg.recv(session, plan.peer, Tag.SETUP, SETUP)
    f = msg.Fields(Tag.SETUP, setup)
    bins = f.get("bins", int)
    if bins < plan.n or bins % ot.ROW_ALIGN or bins > MAX_BIN_FACTOR * plan.n + 512:
        f.fail("bins", f"{bins} bins for {plan.n} ids (from {plan.peer})")
    return f.get("seed", bytes), bins, f.get("point", bytes)
