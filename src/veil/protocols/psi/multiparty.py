"""ECDH-PSI among N >= 3 parties, semi-honest: the receivers learn only the intersection
of all sets, nobody learns a pairwise intersection.

Construction. SecretFlow's three-party ECDH-PSI (``ecdh_3pc_psi``, SecretFlow SPU
docs, "ECDH-PSI (3P)") chains two-party ECDH and, by its own account, leaks the size
of the first two parties' intersection. A chain of plain blinding cannot avoid that:
whoever compares two sets' values blinded under the same keys learns their
intersection. So the sets are compared only once they are pooled and unlinkable: each
id is ElGamal-encrypted under a key held jointly by all parties, and the pool passes
through every party, each of which removes its share of the decryption key, raises
every ciphertext to its secret w_j and shuffles (a decryption mix-net with
exponentiation, [Jakobsson, "A practical mix", Eurocrypt 1998; Huberman-Franklin-Hogg
1999 for the commutative blinding]). The last party D strips the last layer and sees
each id as W*H(x), W = w_0...w_{N-2} (the mixers' exponents: one of D's own would hide
nothing from D), in an order no single party knows, and counts how many parties hold
it. Group: ristretto255 (prime order; :mod:`veil.crypto.ristretto`); H: the suite's
hash to the group.

The key is multiplicative, Y = y_{N-1}...y_1 y_0 G, so that removing a share and
blinding are one scalar multiplication of each half of a ciphertext (2 per mix step;
an additive key Y = sum y_j G needs 3 and a subtraction): P_j turns (A, B) into
(w_j y_j A, w_j B). By induction, what reaches P_j is (A, Q + k A) with Q = W_{<j} H(x),
k = y_j...y_{N-1}: an ElGamal ciphertext of Q to the base G_j = y_{j-1}...y_0 G under
the key Y = k G_j, uniformly re-randomised by every step; P_j knows G_j, Y and y_j but
not k / y_j (DDH), so only D = P_{N-1}, for which k = y_D, can strip the last layer.
P_0 encrypts its own ids straight into the form its step leaves,
(r G, w_0 H(x) + r Y/y_0), which has the same distribution, one multiplication less.

Positions (job order P_0..P_{N-1}; D = P_{N-1}; U = the first receiver other than D,
else P_0), secrets per party: y_j (key share), w_j (blinding; unused at D), sigma_j (a mask
for its own ring); U also holds u. The mixers are P_0..P_{N-2}.
  0. all <-> all  HELLO: protocol, version, suite, n_j, batch size, result_to.
     P_j -> P_{j+1}  KEY: y_j...y_0 G (P_0 starts from G); D -> all  KEY: Y.
  1. P_j -> P_0   POOL: (r G, H(x) + r Y) for each distinct id x, fresh r, batch by batch.
  2. P_0 -> ... -> P_{N-1}  MIX: each mixer P_j turns every (A, B) into (w_j y_j A, w_j B),
                  shuffles the whole pool with a secure permutation, and passes it on.
  3. D            decrypts the last layer: B - y_D A = W H(x) for every pooled id, counts
                  each value;
     D -> U       COMMON: the values held N times (the intersection), sorted.
  4. for each receiver R, a RING through the mixers (and D only in D's own ring),
     R -> next -> ... -> R: R sends sigma_R H(r) for its ids (in a secret random order);
     each other member P_j multiplies by w_j (U also by u, except in its own ring). The
     rings need nothing from the mix, so they run beside it (a party waiting for the pool
     works on them).
  5. U -> receivers  RESULT: u W H(x) for the common values, sorted. R raises each to
     f = sigma_R / w_R (sigma_R at D; U takes COMMON instead of RESULT), which gives the
     ring values of its common ids; those are its rows of the intersection, in RESULT's
     order. Unmasking the |I| common values costs less than the n_R own ones.

What each party learns (beyond its own input and output):
  - every party: the number of distinct ids of every other party (HELLO); the KEY
    values are multiples of G with unknown logarithms, unrelated to any id;
  - P_0 .. P_{N-2} as mixers: nothing (ciphertexts under a key they cannot strip, DDH);
  - in a ring: nothing (values masked by the ring owner's sigma, DDH);
  - D: how many pooled values are held by exactly k parties, for each k (a histogram:
    for three parties, the sum of the three pairwise intersection sizes, not any one of
    them), never which ids or which parties: W is unknown to D, and its own ring output
    carries u, so no pooled value can be tied to an id or to its holder;
  - U: the intersection size (U is a receiver whenever one other than D exists);
  - a receiver: which of its ids are in the intersection of all sets.
Raw ids and plain hashes never leave a party. Full 32-byte points are compared, so
``truncate_bits`` is not used. Cost, in variable-base scalar multiplications: every
party 1 per own id to encrypt (and a fixed-base one); a mixer 2 per pooled id (P_0: 1
per own id, its encryption did the rest), D 1 and a subtraction; in the rings, each
mixer 1 per id of every other receiver, a receiver 1 per own id and 1 per common id (U:
2, RESULT too); one hash to the group per own id.
The mix runs party after party (each step must hold the whole pool to shuffle it).
Memory per party: the pool, 64 bytes per pooled id (32 at D), its permutation (8), and
32 per own id (its hashes); a mixer steps while it sends, so no unread backlog builds
up at the next one. Figures: benchmarks/RESULTS.md, "Three-party ECDH-PSI".
Collusion is outside the model (semi-honest, non-colluding): D and U together could tie
U's ids to pooled values (U's ring output divided by u) and so learn how many parties
hold each of U's ids; D with every other party learns everything.

Result order: each receiver's ``indices`` follow RESULT, sorted by u W H(x), which
every receiver holds for each common id, so all receivers list them in the same order.

This module holds the handshake, the key chain and each position's run; the messages
(``Tag``), the secrets and the steps 1-5 are in :mod:`.multiparty_steps`, the batch
helpers in :mod:`.batches`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

import numpy as np

from veil import messages as msg
from veil.crypto import ecc, ristretto
from veil.errors import ConfigError
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy
from veil.protocols.psi import multiparty_steps as steps
from veil.protocols.psi.batches import Background, hash_points, match_in_order, mult, sorted_result
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
    secure_permutation,
)
from veil.protocols.psi.ecdh import MAX_BATCH
from veil.protocols.psi.multiparty_steps import Keys, P, Plan, Tag, new_keys

__all__ = ["HELLO", "PROTOCOL", "Keys", "Tag", "new_keys", "run_party"]

PROTOCOL = "ecdh-multiparty"
PROTOCOL_VERSION = 2  # 2: D adds no blinding, rings skip D, receivers unmask RESULT
_ONE = (1).to_bytes(ristretto.SCALAR_BYTES, "little")
WAIT_PER_ID = 2e-3  # seconds a mixer may take per pooled id (about 10x a loaded core's)


HELLO = hello_schema(suite=msg.Str(), batch_size=msg.Int(1, MAX_BATCH))
# POOL/MIX: Blob(count * 64); RING: Blob(count * 32); COMMON/RESULT: Blob(max_size=
# 32 * min n_j, multiple=32) -- sizes from HELLO.


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
    n_input, order = len(raw), distinct[secure_permutation(len(distinct))]
    keys = new_keys()
    plan = _handshake(session, params, len(distinct), keys)
    me = session.me
    with ecc.ScalarMultiplier(params.threads) as mul:
        hashed = hash_points(mul, [raw[j] for j in order])  # H(x), once per own id
        del raw

        # The rings need nothing from the mix: they run beside it, so a party waiting
        # for the pool to reach it works on the rings meanwhile.
        def ring(r: str) -> Background:
            sub = session.sub(f"ring{plan.parties.index(r)}")
            return Background(partial(steps.ring, sub, mul, plan, keys, owner=r, hashed=hashed))

        rings = {r: ring(r) for r in plan.receivers if me in steps.ring_members(plan, r)}
        own_pool = steps.encrypt(mul, hashed, plan, keys, me=me)
        if me != plan.parties[0]:
            with Outbox(session, plan.parties[0]) as out:
                for cts in own_pool:
                    out.send(Tag.POOL, cts.tobytes())
            own_pool = iter([])
        values = steps.mix(session, mul, plan, keys, own_pool)
        if me == plan.d:
            vals, counts = np.unique(values.view(f"S{P}").reshape(-1), return_counts=True)
            del values
            session.send(plan.u, Tag.COMMON, vals[counts == len(plan.parties)].tobytes())
            del vals, counts
        own = rings[me].result() if me in plan.receivers else b""
        for bg in rings.values():
            bg.result()
        if me == plan.u:
            common = steps.recv_common(session, plan, plan.d, Tag.COMMON)
            result, base = sorted_result(mul, keys.u, common)
            for r in plan.receivers:
                if r != me:
                    session.send(r, Tag.RESULT, result)
        elif me in plan.receivers:
            base = steps.recv_common(session, plan, plan.u, Tag.RESULT)
        peer_n = min(v for p, v in plan.n.items() if p != me)
        if me not in plan.receivers:
            return PsiResult(None, None, n_input, len(distinct), peer_n)
        # own holds f * base for each own common id (f: steps.unmask), so f * base, in RESULT's
        # sorted order, finds this party's rows in the order every receiver shares.
        hits = match_in_order(own, mult(mul, steps.unmask(plan, keys, me), base))
    return PsiResult(order[hits], len(hits), n_input, len(distinct), peer_n)


def _handshake(session: Session, params: PsiParams, n: int, keys: Keys) -> Plan:
    mine = hello(
        PROTOCOL,
        PROTOCOL_VERSION,
        n,
        params,
        suite=params.suite.wire_name,
        batch_size=params.batch_size,
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
    key = _joint_key(session, parties, keys)
    receivers = [p for p in parties if p in params.result_to]
    d = parties[-1]
    u = next((p for p in receivers if p != d), parties[0])
    sizes = {p: h["n"] for p, h in hellos.items()}
    # A party may wait for every mixer ahead of it: allow each WAIT_PER_ID per pooled id.
    wait = session.timeout + WAIT_PER_ID * len(parties) * sum(sizes.values())
    batch = {p: h["batch_size"] for p, h in hellos.items()}
    return Plan(parties, sizes, batch, key, receivers, d, u, wait)


def _joint_key(session: Session, parties: list[str], keys: Keys) -> bytes:
    """Y = y_{N-1}...y_1 y_0 G, built along the chain and broadcast by its last party."""
    me, pos = session.me, parties.index(session.me)
    if pos == 0:
        partial = ristretto.base_mult(keys.y)
    else:
        got = msg.recv(session, parties[pos - 1], Tag.KEY, msg.Blob(P))
        partial = ristretto.scalar_mult(keys.y, got)
    if me != parties[-1]:
        session.send(parties[pos + 1], Tag.KEY, partial)
        key: bytes = msg.recv(session, parties[-1], Tag.KEY, msg.Blob(P))
        return ristretto.scalar_mult(_ONE, key)  # checks: a valid point, not the identity
    for peer in parties[:-1]:
        session.send(peer, Tag.KEY, partial)
    return partial
