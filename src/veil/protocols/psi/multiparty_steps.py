"""The steps of the multi-party ECDH-PSI that :mod:`.multiparty` runs (its docstring
gives the construction, the papers and what each party learns): the messages, each
party's secrets and the public plan, the ElGamal encryption of a party's ids into the
pool (step 1), the mix with D's decryption (steps 2 and 3), the receivers' rings (4)
and the factor that unmasks a receiver's ring values (5)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from veil import messages as msg
from veil.crypto import ecc, ristretto
from veil.net.session import Session
from veil.protocols.psi.batches import join_halves, mult, recv_batches, rows
from veil.protocols.psi.common import Outbox, secure_permutation

__all__ = [
    "CT",
    "Keys",
    "P",
    "Plan",
    "Tag",
    "encrypt",
    "mix",
    "new_keys",
    "recv_common",
    "ring",
    "ring_members",
    "unmask",
]

P = ristretto.POINT_BYTES
CT = 2 * P  # one ElGamal ciphertext: A || B


class Tag(StrEnum):
    """Every message of the multi-party PSI (``multiparty.Tag``)."""

    HELLO = "hello"  # sizes and parameters, all to all
    KEY = "key"  # P_j -> P_{j+1}: y_j...y_0 G; then D -> all: the joint key Y
    POOL = "pool"  # P_j -> P_0: ElGamal ciphertexts of its ids
    MIX = "mix"  # P_j -> P_{j+1}: the pool, partly decrypted, blinded and shuffled
    COMMON = "common"  # D -> U: W H(x) of the common ids, sorted
    RING = "ring"  # around one receiver's ring: its masked ids
    RESULT = "result"  # U -> receivers: u W H(x) of the common ids, sorted


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
class Plan:
    """The public plan of one run: every party derives the same from the HELLOs, the key
    chain and the job's party order."""

    parties: list[str]
    n: dict[str, int]
    batch: dict[str, int]
    key: bytes  # the joint ElGamal public key Y
    receivers: list[str]  # result_to in job order
    d: str
    u: str
    wait: float  # seconds to wait for a message: the mix before it may be long


def encrypt(
    mul: ecc.ScalarMultiplier, hashed: np.ndarray, plan: Plan, keys: Keys, *, me: str
) -> Iterator[np.ndarray]:
    """ElGamal ciphertexts (r G, H(x) + r Y) of this party's ids, a batch of 64-byte rows
    at a time (the whole own pool is never held). The first mixer P_0 encrypts its own
    ids as its mix step would leave them, (r G, w_0 H(x) + r Y/y_0): the same
    distribution as (w_0 y_0 A, w_0 B) of a fresh ciphertext (A = r' G, and r =
    w_0 y_0 r' is uniform), for one scalar multiplication less."""
    first = me == plan.parties[0]
    key = plan.key
    if first:
        key = ristretto.scalar_mult(ristretto.scalar_invert(keys.y), key)

    def part(lo: int, hi: int, chunk: np.ndarray) -> bytes:
        k = hi - lo
        if k == 0:
            return b""
        h = chunk[lo:hi].tobytes()
        if first:
            h = ristretto.scalar_mult(keys.w, h)
        r = ristretto.random_scalars(k)
        rk = ristretto.scalars_mult(r, key * k)
        return join_halves(ristretto.base_mult(r), ristretto.add(h, rk))

    batch = plan.batch[me]
    for lo in range(0, len(hashed), batch):
        chunk = hashed[lo : lo + batch]
        yield rows(b"".join(mul.map(part, len(chunk), chunk)), CT)


def mix(
    session: Session,
    mul: ecc.ScalarMultiplier,
    plan: Plan,
    keys: Keys,
    own: Iterator[np.ndarray],
) -> np.ndarray:
    """This party's turn in the mix; returns the decrypted pool at D (empty elsewhere).

    A mixer files what it receives as it comes and does its step batch by batch as it
    sends the shuffled pool on, so it works at the pace it sends and the next mixer,
    which only files, never lets a backlog of unread batches pile up (the transport
    holds whatever has not been read). D decrypts on receipt, faster than a mixer sends.
    """
    me, parties = session.me, plan.parties
    pos = parties.index(me)
    last = me == plan.d
    wy = ristretto.scalar_mul(keys.w, keys.y)

    def step(lo: int, hi: int, cts: np.ndarray) -> bytes:
        if hi == lo:
            return b""
        a, b = cts[lo:hi, :P].tobytes(), cts[lo:hi, P:].tobytes()
        if last:  # B - y_D A = W H(x): D adds no blinding of its own (see unmask)
            return ristretto.sub(b, ristretto.scalar_mult(keys.y, a))
        return join_halves(ristretto.scalar_mult(wy, a), ristretto.scalar_mult(keys.w, b))

    def stepped(cts: np.ndarray) -> np.ndarray:
        return rows(b"".join(mul.map(step, len(cts), cts)), P if last else CT)

    sources = [(p, Tag.POOL) for p in parties] if pos == 0 else [(parties[pos - 1], Tag.MIX)]
    total = sum(plan.n.values())
    pool = np.empty((total, P if last else CT), dtype=np.uint8)  # the one copy here
    done = ready = 0  # rows filed; the first `ready` are stepped already (P_0's own)
    for src, tag in sources:
        if src == me:  # first in the pool: encrypt left them as this step would
            for cts in own:
                pool[done : done + len(cts)] = cts
                done += len(cts)
            ready = done
            continue
        count = plan.n[src] if tag == Tag.POOL else total
        for cts in recv_batches(
            session, src, tag, count=count, batch=plan.batch[src], width=CT, wait=plan.wait
        ):
            pool[done : done + len(cts)] = stepped(cts) if last else cts
            done += len(cts)
            session.progress("psi", 0.3 * done / max(total, 1))
    if last:
        return pool
    perm = secure_permutation(total)  # sent batch by batch: no shuffled copy of the pool
    with Outbox(session, parties[pos + 1]) as out:
        for lo in range(0, total, plan.batch[me]):
            idx = perm[lo : lo + plan.batch[me]]
            cts, todo = pool[idx], idx >= ready
            if todo.any():
                cts[todo] = stepped(cts[todo])
            out.send(Tag.MIX, cts.tobytes())
            session.progress("psi", 0.3 + 0.3 * (lo + len(idx)) / total)
    return pool[:0]


def ring_members(plan: Plan, owner: str) -> list[str]:
    """Who a receiver's ring passes: the mixers (every w_j of W), and D only in its own."""
    return plan.parties if owner == plan.d else plan.parties[:-1]


def ring(
    session: Session,
    mul: ecc.ScalarMultiplier,
    plan: Plan,
    keys: Keys,
    *,
    owner: str,
    hashed: np.ndarray,
) -> bytes:
    """One receiver's ring; returns, at the owner, its ids as they come back (sigma_R W u
    H(x) without the owner's own w_R, and without u at U), else b""."""
    members, me = ring_members(plan, owner), session.me
    i = members.index(me)
    nxt, prv = members[(i + 1) % len(members)], members[i - 1]
    count, batch = plan.n[owner], plan.batch[owner]

    def incoming() -> Iterator[bytes]:
        for pts in recv_batches(
            session, prv, Tag.RING, count=count, batch=batch, width=P, wait=plan.wait
        ):
            yield pts.tobytes()

    if me != owner:
        k = ristretto.scalar_mul(keys.w, keys.u) if me == plan.u else keys.w
        with Outbox(session, nxt) as out:
            for pts in incoming():
                out.send(Tag.RING, mult(mul, k, pts))
        return b""
    with Outbox(session, nxt) as out:
        for lo in range(0, len(hashed), batch):
            out.send(Tag.RING, mult(mul, keys.sigma, hashed[lo : lo + batch].tobytes()))
    return b"".join(list(incoming()))


def unmask(plan: Plan, keys: Keys, me: str) -> bytes:
    """The factor f with own ring value = f * base for a common id: base is RESULT = u W
    H(x) (W: the mixers' w_j), or at U the COMMON value W H(x) (U's ring skips u); the
    ring left out the owner's sigma_R and, at a mixer, its w_R. Applying f to the |I|
    common values instead of 1/f to every own value saves the owner n_R - |I|."""
    if me == plan.d:
        return keys.sigma
    return ristretto.scalar_mul(keys.sigma, ristretto.scalar_invert(keys.w))


def recv_common(session: Session, plan: Plan, src: str, tag: Tag) -> bytes:
    most = P * min(plan.n.values())
    data: bytes = msg.recv(session, src, tag, msg.Blob(max_size=most, multiple=P), plan.wait)
    return data
