"""ECDH-PSI among N >= 3 parties, semi-honest: the receivers learn only the intersection
of all sets, nobody learns a pairwise intersection.

Construction. SecretFlow's three-party ECDH-PSI (``ecdh_3pc_psi``, SecretFlow SPU
docs, "ECDH-PSI (3P)") chains two-party ECDH and, by its own account, leaks the size
of the first two parties' intersection. A chain of plain blinding cannot avoid that:
whoever compares two sets' values blinded under the same keys learns their
intersection. So the sets are compared only once they are pooled and unlinkable: each
id is ElGamal-encrypted under a key shared by all parties, and the pool passes through
every party, each of which removes its share of the decryption key, raises every
ciphertext to its secret w_j and shuffles (a decryption mix-net with exponentiation,
[Jakobsson, "A practical mix", Eurocrypt 1998; Huberman-Franklin-Hogg 1999 for the
commutative blinding]). The last party sees each id as W*H(x), W = w_0...w_{N-1}, in an
order no single party knows, and counts how many parties hold it. Group: ristretto255
(prime order; :mod:`veil.crypto.ristretto`); H: the suite's hash to the group.

Positions (job order P_0..P_{N-1}; D = P_{N-1}; U = the first receiver other than D,
else P_0), secrets per party: y_j (key share), w_j (blinding), sigma_j (a mask for
its own ring); U also holds u.
  0. all <-> all  HELLO: protocol, version, suite, n_j, batch size, result_to, Y_j = y_j G.
  1. P_j -> P_0   POOL: (r G, H(x) + r Y) for each distinct id x, Y = sum Y_j, fresh r.
  2. P_0 -> ... -> P_{N-1}  MIX: each P_j turns every (A, B) into (w_j A, w_j (B - y_j A)),
                  shuffles with a secure permutation, and passes the pool on.
  3. D            decrypts the last layer: W H(x) for every pooled id, counts each value;
     D -> U       COMMON: the values held N times (the intersection), sorted.
  4. for each receiver R, a RING R -> R+1 -> ... -> R-1 -> R: R sends sigma_R H(r) for its
     ids (in a secret random order); each P_j multiplies by w_j (U also by u); R removes
     sigma_R and multiplies by w_R: u W H(r) for each of its ids.
  5. U -> receivers  RESULT: u (W H(x)) for the common values, sorted. Each receiver's
     matches are its rows of the intersection.

What each party learns (beyond its own input and output):
  - every party: the number of distinct ids of every other party (HELLO);
  - P_0 .. P_{N-2} as mixers: nothing (ciphertexts under a key share they lack, DDH);
  - in a ring: nothing (values masked by the ring owner's sigma, DDH);
  - D: how many pooled values are held by exactly k parties, for each k (a histogram:
    for three parties, the sum of the three pairwise intersection sizes, not any one of
    them), never which ids or which parties: W is unknown to D, so no pooled value can
    be tied to an id or to its holder;
  - U: the intersection size (U is a receiver whenever one other than D exists);
  - a receiver: which of its ids are in the intersection of all sets.
Raw ids and plain hashes never leave a party. Full 32-byte points are compared, so
``truncate_bits`` is not used. Cost per party: about 3 scalar multiplications per
pooled id (all parties' ids) and one per id of each receiver; the mix runs party after
party. Measured (benchmarks/psi.py, 1e5 ids per party, three parties, gRPC): 69-86
CPU-s, 250 MB and 18-35 MB sent per party, against 12 CPU-s for two-party ECDH.
Collusion is outside the model (semi-honest, non-colluding): D and U together could tie
U's ids to pooled values (U's ring output divided by u) and so learn how many parties
hold each of U's ids; D with every other party learns everything.

Result order: each receiver's ``indices`` are sorted by u W H(x), which every receiver
holds for each common id, so all receivers list the common ids in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from veil import messages as msg
from veil.crypto import ecc, ristretto
from veil.errors import ConfigError
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy
from veil.protocols.psi.common import (
    MAX_PARTIES,
    Outbox,
    Protocol,
    PsiParams,
    PsiResult,
    check_hello,
    check_params,
    distinct_ids,
    hello,
    hello_schema,
    match_duals,
    secure_permutation,
)
from veil.protocols.psi.ecdh import MAX_BATCH

PROTOCOL = "ecdh-multiparty"
PROTOCOL_VERSION = 1
P = ristretto.POINT_BYTES
CT = 2 * P  # one ElGamal ciphertext: A || B
WAIT_PER_ID = 2e-3  # seconds a mixer may take per pooled id (about 10x a loaded core's)


class Tag(StrEnum):
    """Every message of this protocol."""

    HELLO = "hello"  # sizes, parameters and the key share Y_j, all to all
    POOL = "pool"  # P_j -> P_0: ElGamal ciphertexts of its ids
    MIX = "mix"  # P_j -> P_{j+1}: the pool, partly decrypted, blinded and shuffled
    COMMON = "common"  # D -> U: W H(x) of the common ids, sorted
    RING = "ring"  # around one receiver's ring: its masked ids
    RESULT = "result"  # U -> receivers: u W H(x) of the common ids, sorted


HELLO = hello_schema(suite=msg.Str(), batch_size=msg.Int(1, MAX_BATCH), key=msg.Blob(P))
# POOL/MIX: Blob(count * 64); RING: Blob(count * 32); COMMON/RESULT: Blob(max_size=
# 32 * min n_j, multiple=32) -- sizes from HELLO.


@dataclass(frozen=True)
class Keys:
    """One party's secrets for one run (fresh each run)."""

    y: bytes  # ElGamal key share
    w: bytes  # blinding exponent of the mix
    sigma: bytes  # mask of this party's own ring
    u: bytes  # result exponent (used by U only)


def new_keys() -> Keys:
    """Fresh uniform non-zero scalars mod L."""
    s = ristretto.random_scalars(4)
    return Keys(s[:32], s[32:64], s[64:96], s[96:])


@dataclass(frozen=True)
class _Plan:
    parties: list[str]
    n: dict[str, int]
    batch: dict[str, int]
    key: bytes  # the joint ElGamal public key Y
    receivers: list[str]  # result_to in job order
    d: str
    u: str
    wait: float  # seconds to wait for a message: the mix before it may be long


def run_party(
    session: Session,
    ids: Iterable[str] | Sequence[str],
    params: PsiParams,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> PsiResult:
    """Every position of the protocol (this party's follows from the job's party order and
    ``params.result_to``; see the module docstring)."""
    check_params(session, params, policy, Protocol.ECDH, parties=(3, MAX_PARTIES))
    if params.suite.group is not ecc.Group.RISTRETTO255:
        raise ConfigError(
            "suite",
            f"multi-party PSI runs on ristretto255, not {params.suite.name}",
            "use the default suite",
        )
    raw, distinct = distinct_ids(ids)
    order = distinct[secure_permutation(len(distinct))]
    keys = new_keys()
    plan = _handshake(session, params, len(distinct), keys)
    me = session.me
    with ecc.ScalarMultiplier(params.threads) as mul:
        items = [raw[j] for j in order]
        pool = _encrypt(mul, items, plan.key)
        if me != plan.parties[0]:
            _send_batches(session, plan.parties[0], Tag.POOL, pool, plan.batch[me])
        values = _mix(session, mul, plan, keys, pool)
        if me == plan.d:
            vals, counts = np.unique(values.view(f"S{P}").reshape(-1), return_counts=True)
            session.send(plan.u, Tag.COMMON, vals[counts == len(plan.parties)].tobytes())
        own = b""
        for r in plan.receivers:
            got = _ring(
                session.sub(f"ring{plan.parties.index(r)}"), mul, plan, keys, owner=r, items=items
            )
            own = got if r == me else own
        if me == plan.u:
            common = _recv_common(session, plan, plan.d, Tag.COMMON)
            result = b"".join(mul(keys.u, ecc.split_points(common)))
            for r in plan.receivers:
                if r != me:
                    session.send(r, Tag.RESULT, result)
    peer_n = min(v for p, v in plan.n.items() if p != me)
    if me not in plan.receivers:
        return PsiResult(None, None, len(raw), len(distinct), peer_n)
    if me != plan.u:
        result = _recv_common(session, plan, plan.u, Tag.RESULT)
    hits = match_duals(own, result, P)
    return PsiResult(order[hits], len(hits), len(raw), len(distinct), peer_n)


def _handshake(session: Session, params: PsiParams, n: int, keys: Keys) -> _Plan:
    mine = hello(
        PROTOCOL,
        PROTOCOL_VERSION,
        n,
        params,
        suite=params.suite.wire_name,
        batch_size=params.batch_size,
        key=ristretto.base_mult(keys.y),
    )
    for peer in session.peers():
        session.send(peer, Tag.HELLO, mine)
    hellos: dict[str, dict[str, Any]] = {session.me: mine}
    agree = ("version", "suite", "result_to")
    for peer in session.peers():
        theirs = session.recv(peer, Tag.HELLO)
        hellos[peer] = check_hello(
            session, peer, Tag.HELLO, theirs, mine=mine, schema=HELLO, agree=agree
        )
    parties = list(session.parties)
    key = hellos[parties[0]]["key"]
    for p in parties[1:]:
        key = ristretto.add(key, hellos[p]["key"])
    receivers = [p for p in parties if p in params.result_to]
    d = parties[-1]
    u = next((p for p in receivers if p != d), parties[0])
    sizes = {p: h["n"] for p, h in hellos.items()}
    # A party may wait for every mixer ahead of it: allow each WAIT_PER_ID per pooled id.
    wait = session.timeout + WAIT_PER_ID * len(parties) * sum(sizes.values())
    batch = {p: h["batch_size"] for p, h in hellos.items()}
    return _Plan(parties, sizes, batch, key, receivers, d, u, wait)


# -- steps ---------------------------------------------------------------------------


def _encrypt(mul: ecc.ScalarMultiplier, items: list[bytes], key: bytes) -> np.ndarray:
    """ElGamal ciphertexts (r G, H(x) + r Y) of ``items``, one row of 64 bytes each."""

    def part(lo: int, hi: int) -> bytes:
        k = hi - lo
        if k == 0:
            return b""
        h = b"".join(ecc.hash_to_points(items[lo:hi], ecc.RISTRETTO255))
        r = ristretto.random_scalars(k)
        a = ristretto.base_mult(r)
        b = ristretto.add(h, ristretto.scalars_mult(r, key * k))
        return _join_ct(a, b)

    return _rows(b"".join(mul.map(part, len(items))), CT)


def _mix(
    session: Session, mul: ecc.ScalarMultiplier, plan: _Plan, keys: Keys, own: np.ndarray
) -> np.ndarray:
    """This party's turn in the mix; returns the decrypted pool at D (empty elsewhere)."""
    me, parties = session.me, plan.parties
    pos = parties.index(me)
    last = me == plan.d

    def step(lo: int, hi: int, cts: np.ndarray) -> bytes:
        if hi == lo:
            return b""
        a, b = cts[lo:hi, :P].tobytes(), cts[lo:hi, P:].tobytes()
        b = ristretto.sub(b, ristretto.scalar_mult(keys.y, a))
        if last:
            return ristretto.scalar_mult(keys.w, b)
        return _join_ct(ristretto.scalar_mult(keys.w, a), ristretto.scalar_mult(keys.w, b))

    sources = [(p, Tag.POOL) for p in parties] if pos == 0 else [(parties[pos - 1], Tag.MIX)]
    total = sum(plan.n.values())
    width = P if last else CT
    pool = np.empty((total, width), dtype=np.uint8)  # the one copy of the pool here
    done = 0
    for src, tag in sources:
        if src == me:
            batches: Iterable[np.ndarray] = [own]
        else:
            count = plan.n[src] if tag == Tag.POOL else total
            batches = _recv_batches(
                session, src, tag, count=count, batch=plan.batch[src], width=CT, wait=plan.wait
            )
        for cts in batches:
            pool[done : done + len(cts)] = _rows(b"".join(mul.map(step, len(cts), cts)), width)
            done += len(cts)
            session.progress("psi", 0.6 * done / max(total, 1))
    if last:
        return pool
    perm = secure_permutation(total)  # sent batch by batch: no shuffled copy of the pool
    with Outbox(session, parties[pos + 1]) as out:
        for lo in range(0, total, plan.batch[me]):
            out.send(Tag.MIX, pool[perm[lo : lo + plan.batch[me]]].tobytes())
    return pool[:0]


def _ring(
    session: Session,
    mul: ecc.ScalarMultiplier,
    plan: _Plan,
    keys: Keys,
    *,
    owner: str,
    items: list[bytes],
) -> bytes:
    """One receiver's ring; returns u W H(x) of the owner's ids at the owner, else b""."""
    parties, me = plan.parties, session.me
    nxt, prv = parties[(parties.index(me) + 1) % len(parties)], parties[parties.index(me) - 1]
    count, batch = plan.n[owner], plan.batch[owner]
    if me != owner:
        k = ristretto.scalar_mul(keys.w, keys.u) if me == plan.u else keys.w
        with Outbox(session, nxt) as out:
            for pts in _recv_batches(
                session, prv, Tag.RING, count=count, batch=batch, width=P, wait=plan.wait
            ):
                out.send(Tag.RING, b"".join(mul(k, ecc.split_points(pts.tobytes()))))
        return b""
    with Outbox(session, nxt) as out:
        for lo in range(0, len(items), batch):
            hashed = ecc.hash_to_points(items[lo : lo + batch], ecc.RISTRETTO255)
            out.send(Tag.RING, b"".join(mul(keys.sigma, hashed)))
    k = ristretto.scalar_mul(keys.w, ristretto.scalar_invert(keys.sigma))
    if me == plan.u:
        k = ristretto.scalar_mul(k, keys.u)
    back = [
        b"".join(mul(k, ecc.split_points(pts.tobytes())))
        for pts in _recv_batches(
            session, prv, Tag.RING, count=count, batch=batch, width=P, wait=plan.wait
        )
    ]
    return b"".join(back)


# -- wire helpers ------------------------------------------------------------------------


def _recv_common(session: Session, plan: _Plan, src: str, tag: Tag) -> bytes:
    most = P * min(plan.n.values())
    data: bytes = msg.recv(session, src, tag, msg.Blob(max_size=most, multiple=P), plan.wait)
    return data


def _recv_batches(
    session: Session, src: str, tag: Tag, *, count: int, batch: int, width: int, wait: float
) -> Iterable[np.ndarray]:
    for lo in range(0, count, batch):
        k = min(batch, count - lo)
        yield _rows(msg.recv(session, src, tag, msg.Blob(k * width), wait), width)


def _send_batches(session: Session, to: str, tag: Tag, rows: np.ndarray, batch: int) -> None:
    with Outbox(session, to) as out:
        for lo in range(0, len(rows), batch):
            out.send(tag, rows[lo : lo + batch].tobytes())


def _rows(data: bytes, width: int) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, width)


def _join_ct(a: bytes, b: bytes) -> bytes:
    return np.concatenate((_rows(a, P), _rows(b, P)), axis=1).tobytes()
