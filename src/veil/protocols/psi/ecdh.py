"""ECDH-PSI, two parties, semi-honest [Meadows 1986; Huberman-Franklin-Hogg 1999].

Each party P holds a set of string ids and a secret scalar k_P. H maps an id to a
group element (default suite ``ristretto255``; see :mod:`veil.crypto.ecc`). Because
``[a][b]H(x) == [b][a]H(x)``, equal ids give equal doubly-exponentiated values while
everything else looks random (DDH).

Roles: a party in ``result_to`` is a receiver and learns the intersection; the other
is a sender. With ``result_to`` naming both parties, both are receivers and each
computes the intersection itself (the meaning of ``result_to`` in every PSI protocol).

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
  - a sender: nothing more;
  - with the suite ``curve25519-hash-as-x`` (interconnection only), also one bit per
    peer id, intersection or not: whether its hash lies on the curve or on the twist
    (see :mod:`veil.crypto.ecc`). ``ristretto255`` leaks no such bit.
Raw ids and plain hashes never leave a party: only [k]H(x) and truncated [ab]H(x).

Result order: each receiver's ``indices`` are sorted by the truncated doubly
exponentiated value, which both receivers hold for every common id, so two
receivers list the common ids in the same order (vertical learning aligns rows so).
Duplicates are removed before the protocol (first occurrence kept).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

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
    distinct_ids,
    exchange_hello,
    hello,
    hello_schema,
    match_duals,
    secure_permutation,
    truncate_bytes,
)
from veil.protocols.psi.kernels import open_point_kernels

PROTOCOL_VERSION = 2  # 2: the suite is named by group and truncation (ristretto255 added)
MAX_BATCH = 1 << 20


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


def _run(
    session: Session,
    ids: Iterable[str] | Sequence[str],
    params: PsiParams,
    policy: SecurityPolicy,
) -> PsiResult:
    raw, distinct = distinct_ids(ids)
    order = distinct[secure_permutation(len(distinct))]  # send order -> input position
    plan = _handshake(session, params, len(distinct), policy.stat_sec)
    suite = params.suite
    scalar = ecc.new_scalar(suite)
    own_duals: list[bytes] = []
    peer_duals: list[bytes] = []
    nb_own = -(-plan.n // plan.my_batch)
    nb_peer = -(-plan.m // plan.peer_batch)
    total = max(nb_own + nb_peer, 1)
    kernels = open_point_kernels(params.threads)  # this party's engine (local by default)
    with contextlib.closing(kernels), Outbox(session, plan.peer) as out:
        for i in range(max(nb_own, nb_peer)):
            if i < nb_own:
                idx = order[i * plan.my_batch : (i + 1) * plan.my_batch]
                out.send(Tag.ENC, kernels.hash_blind(scalar, [raw[j] for j in idx], suite))
            if i < nb_peer:
                expect = min(plan.peer_batch, plan.m - i * plan.peer_batch)
                enc = msg.recv(session, plan.peer, Tag.ENC, msg.Blob(expect * ecc.POINT_BYTES))
                dual = kernels.blind_truncate(scalar, enc, plan.tbytes, suite)
                if plan.peer_learns:
                    out.send(Tag.DUAL, dual)
                if plan.me_learns:
                    peer_duals.append(dual)
            session.progress("psi", (min(i + 1, nb_own) + min(i + 1, nb_peer)) / total)
    if not plan.me_learns:
        return PsiResult(None, None, len(raw), plan.n, plan.m)
    for i in range(nb_own):
        expect = min(plan.my_batch, plan.n - i * plan.my_batch)
        own_duals.append(msg.recv(session, plan.peer, Tag.DUAL, msg.Blob(expect * plan.tbytes)))
    hits = match_duals(b"".join(own_duals), b"".join(peer_duals), plan.tbytes)
    return PsiResult(order[hits], len(hits), len(raw), plan.n, plan.m)


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
