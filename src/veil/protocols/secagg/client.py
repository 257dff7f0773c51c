"""The bank's role in secure aggregation (the flow is in :mod:`.protocol`): the setup
once (:func:`setup_client`), then one :func:`contribute` per sum; :func:`run_client`
does both for a single sum."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from veil import codec
from veil.errors import ConfigError, ProtocolError
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy
from veil.protocols.secagg import masks, shamir
from veil.protocols.secagg.messages import (
    Keys,
    Masked,
    PeerKeys,
    Result,
    Reveal,
    Setup,
    SharePlain,
    Shares,
    Tag,
    Unmask,
)
from veil.protocols.secagg.protocol import AGGREGATOR, DEFAULT_PARAMS, RoundAborted, SecAggParams
from veil.protocols.secagg.sending import Posted, post, recv_after

Vector = npt.ArrayLike | Callable[[], npt.ArrayLike]


@dataclass(frozen=True)
class ClientResult:
    """What a bank learns of a sum: how many banks are in it (None when the caller
    confirms the sum itself, ``confirm=False``), its neighbours' count."""

    survivors: int | None
    neighbours: int


@dataclass
class ClientKeys:
    """A bank's secrets after the setup: its mask keys and self-mask seeds (one per sum),
    the neighbours' public keys and the shares it holds for them."""

    me: str
    setup: Setup
    mask_keys: list[masks.KeyPair]
    seeds: list[bytes]
    peers: dict[str, Keys]
    held: dict[str, SharePlain]
    gone: set[str] = field(default_factory=set)  # neighbours that dropped: no more masks
    used: int = 0  # sums done
    ready: tuple[int, int, frozenset[str], masks.Ring] | None = None  # sum, dim, gone, mask
    sending: Posted | None = None  # the last REVEAL, maybe still going out (confirm=False)


def setup_client(
    session: Session,
    sums: int,
    params: SecAggParams = DEFAULT_PARAMS,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> ClientKeys:
    """Bank role, setup: exchange keys and Shamir shares for ``sums`` sums."""
    del policy  # every primitive here is fixed: X25519, ChaCha20, XSalsa20-Poly1305
    agg, me = session.party_of(AGGREGATOR), session.me
    setup = Setup.unpack(session.recv(agg, Tag.SETUP))
    _raise_abort(setup.abort)
    if setup.frac_bits != params.frac_bits or setup.sums != sums:
        raise ConfigError(
            "secure_aggregation",
            f"the aggregator plans {setup.sums} sums at {setup.frac_bits} fractional bits, "
            f"bank '{me}' {sums} at {params.frac_bits}",
            "every party must run the same job",
        )
    holders = len(setup.neighbours) + 1
    if 2 * setup.threshold <= holders:
        raise ProtocolError(f"{Tag.SETUP}.threshold: {setup.threshold} of {holders} is no majority")
    enc = masks.KeyPair()
    mks = [masks.KeyPair() for _ in range(sums)]
    seeds = [secrets.token_bytes(masks.KEY_BYTES) for _ in range(sums)]
    session.send(agg, Tag.KEYS, Keys(enc.public, [k.public for k in mks]).pack())

    peers = PeerKeys.unpack(session.recv(agg, Tag.PEER_KEYS), sums)
    _raise_abort(peers.abort)
    _subset(peers.keys, setup.neighbours, Tag.PEER_KEYS, "keys")
    xs = [setup.index] + [setup.neighbours[v] for v in peers.keys]
    key_sh = [shamir.split(_int(k.secret), xs, setup.threshold) for k in mks]
    seed_sh = [shamir.split(_int(b), xs, setup.threshold) for b in seeds]

    def plain(i: int, to: str) -> SharePlain:
        return SharePlain(me, to, [s[i][1] for s in key_sh], [s[i][1] for s in seed_sh])

    boxes = {v: masks.share_box(enc.secret, peers.keys[v].enc) for v in peers.keys}
    sealed = {
        v: bytes(boxes[v].encrypt(codec.encode(plain(i, v).pack())))
        for i, v in enumerate(peers.keys, start=1)
    }
    session.send(agg, Tag.SHARES, Shares(sealed).pack())

    got = Shares.unpack(session.recv(agg, Tag.PEER_SHARES), Tag.PEER_SHARES)
    _raise_abort(got.abort)
    _subset(got.boxes, peers.keys, Tag.PEER_SHARES, "boxes")
    held = {me: plain(0, me)}
    for v, ct in got.boxes.items():
        raw = masks.open_box(boxes[v], ct, Tag.PEER_SHARES, v)
        share = SharePlain.unpack(codec.decode(raw), Tag.PEER_SHARES, sums)
        if (share.sender, share.recipient) != (v, me):
            who = f"{share.sender}->{share.recipient}"
            raise ProtocolError(f"{Tag.PEER_SHARES}.boxes[{v}]: the share inside is for {who}")
        held[v] = share
    return ClientKeys(me, setup, mks, seeds, {v: peers.keys[v] for v in got.boxes}, held)


def contribute(
    session: Session,
    keys: ClientKeys,
    x: Vector,
    dim: int | None = None,
    *,
    next_dim: int | None = None,
    confirm: bool = True,
) -> ClientResult:
    """Bank role, one sum: add the real vector ``x`` (nothing else of it leaves).

    ``session`` is the setup's. ``x`` may be a function, called once the masks are
    ready (give ``dim`` then). The masks of the next sum, ``next_dim`` values (default
    ``dim``), are made while the aggregator unmasks this one, so a sum's critical path
    holds no mask expansion. ``confirm=False``: return once this bank's shares are
    revealed, without RESULT; the caller's next message from the aggregator must then
    say whether the sum completed (see :func:`~.aggregator.aggregate`); receive it with
    :func:`~.sending.recv_after` ``(keys.sending, ...)``.

    Messages are posted (:mod:`.sending`): the aggregator's reply, not the network's
    acknowledgement, tells the bank its message arrived."""
    j, st = keys.used, keys.setup
    if j >= st.sums:
        raise ConfigError("secure_aggregation", f"the keys were made for {st.sums} sums")
    keys.used += 1
    last, keys.sending = keys.sending, None
    if last is not None:  # the last REVEAL: the aggregator has answered it since
        last.wait()
    s, agg = session.sub(f"sum{j}"), session.party_of(AGGREGATOR)
    if dim is None:
        vec = _vector(x, None, keys.me)
        dim = vec.size
    mask = _mask(keys, j, dim)
    vec = _vector(x, dim, keys.me)
    q = masks.quantize(vec, st.frac_bits, st.n_terms, f"bank '{keys.me}' update")
    sending = post(s, {agg: Masked(q + mask).pack()}, Tag.MASKED)
    um = Unmask.unpack(recv_after(sending, s, agg, Tag.UNMASK))
    _raise_abort(um.abort)
    _subset(dict.fromkeys(um.dropped + um.survivors), keys.held, Tag.UNMASK, "survivors")
    if keys.me in um.dropped or keys.gone & set(um.dropped + um.survivors):
        raise ProtocolError(f"{Tag.UNMASK}.dropped: lists a bank that is not a live neighbour")
    keys.gone |= set(um.dropped)
    reveal = Reveal(
        mask_keys={v: shamir.to_bytes(keys.held[v].mask_keys[j]) for v in um.dropped},
        seeds={v: shamir.to_bytes(keys.held[v].seeds[j]) for v in um.survivors},
    )
    sending = post(s, {agg: reveal.pack()}, Tag.REVEAL)
    if j + 1 < st.sums:  # the aggregator unmasks now, and this bank would only wait
        n = next_dim or dim
        keys.ready = (j + 1, n, frozenset(keys.gone), _mask(keys, j + 1, n))
    if not confirm:
        keys.sending = sending
        return ClientResult(None, len(st.neighbours))
    res = Result.unpack(recv_after(sending, s, agg, Tag.RESULT))
    _raise_abort(res.abort)
    return ClientResult(res.survivors, len(st.neighbours))


def _mask(keys: ClientKeys, j: int, dim: int) -> masks.Ring:
    """Sum ``j``'s mask: the self-mask plus ± a pairwise mask per live neighbour (made
    in advance by the previous sum if it knew the size and no neighbour dropped since)."""
    ready, keys.ready = keys.ready, None
    if ready is not None and ready[:3] == (j, dim, frozenset(keys.gone)):
        return ready[3]
    st, mk = keys.setup, keys.mask_keys[j]
    mask = masks.expand(keys.seeds[j], dim)
    for v, pk in keys.peers.items():
        if v not in keys.gone:
            pm = masks.expand(masks.pair_seed(mk.secret, mk.public, pk.masks[j]), dim)
            mask = mask + pm if st.index < st.neighbours[v] else mask - pm
    return mask


def run_client(
    session: Session,
    x: Vector,
    params: SecAggParams = DEFAULT_PARAMS,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> ClientResult:
    """Bank role for a single sum: setup, then contribute ``x``."""
    return contribute(session, setup_client(session, 1, params, policy=policy), x)


def _vector(x: Vector, dim: int | None, me: str) -> npt.NDArray[np.float64]:
    vec = np.asarray(x() if callable(x) else x, dtype=np.float64).ravel()
    if dim is not None and vec.size != dim:
        raise ConfigError("secure_aggregation", f"bank '{me}' has {vec.size} values, not {dim}")
    return vec


def _int(b: bytes) -> int:
    return int.from_bytes(b, "little")


def _raise_abort(reason: str) -> None:
    if reason:
        raise RoundAborted(reason)


def _subset(got: Any, allowed: Any, tag: Tag, name: str) -> None:
    extra = set(got) - set(allowed)
    if extra:
        raise ProtocolError(f"{tag}.{name}: unexpected banks {sorted(extra)}")
