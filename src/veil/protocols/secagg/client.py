"""The bank's role in secure aggregation (the flow is in :mod:`.protocol`)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ClientResult:
    """What a bank learns: how many banks are in the sum, its neighbours' count."""

    survivors: int
    neighbours: int


def run_client(
    session: Session,
    x: npt.ArrayLike,
    params: SecAggParams = DEFAULT_PARAMS,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> ClientResult:
    """Bank role: contribute the real vector ``x`` to the sum (nothing else leaves)."""
    del policy  # every primitive here is fixed: X25519, ChaCha20, XSalsa20-Poly1305
    agg = session.party_of(AGGREGATOR)
    me = session.me
    setup = Setup.unpack(session.recv(agg, Tag.SETUP))
    _raise_abort(setup.abort)
    vec = np.asarray(x, dtype=np.float64).ravel()
    if setup.dim != vec.size or setup.frac_bits != params.frac_bits:
        raise ConfigError(
            "secure_aggregation",
            f"the aggregator aggregates {setup.dim} values at {setup.frac_bits} fractional "
            f"bits, bank '{me}' has {vec.size} at {params.frac_bits}",
            "every party must run the same job",
        )
    holders = len(setup.neighbours) + 1
    if 2 * setup.threshold <= holders:
        raise ProtocolError(f"{Tag.SETUP}.threshold: {setup.threshold} of {holders} is no majority")
    q = masks.quantize(vec, setup.frac_bits, setup.n_terms, f"bank '{me}' update")
    enc, mk = masks.KeyPair(), masks.KeyPair()
    session.send(agg, Tag.KEYS, Keys(enc.public, mk.public).pack())

    peers = PeerKeys.unpack(session.recv(agg, Tag.PEER_KEYS))
    _raise_abort(peers.abort)
    _subset(peers.keys, setup.neighbours, Tag.PEER_KEYS, "keys")
    seed = secrets.token_bytes(masks.KEY_BYTES)
    xs = [setup.index] + [setup.neighbours[v] for v in peers.keys]
    key_sh = shamir.split(_int(mk.secret), xs, setup.threshold)
    seed_sh = shamir.split(_int(seed), xs, setup.threshold)
    boxes = {}
    for i, v in enumerate(peers.keys, start=1):
        out = SharePlain(me, v, key_sh[i][1], seed_sh[i][1]).pack()
        box = masks.share_box(enc.secret, peers.keys[v].enc)
        boxes[v] = bytes(box.encrypt(codec.encode(out)))
    session.send(agg, Tag.SHARES, Shares(boxes).pack())

    got = Shares.unpack(session.recv(agg, Tag.PEER_SHARES), Tag.PEER_SHARES)
    _raise_abort(got.abort)
    _subset(got.boxes, peers.keys, Tag.PEER_SHARES, "boxes")
    held: dict[str, SharePlain] = {me: SharePlain(me, me, key_sh[0][1], seed_sh[0][1])}
    y = q + masks.expand(seed, vec.size)
    for v, ct in got.boxes.items():
        raw = masks.open_box(masks.share_box(enc.secret, peers.keys[v].enc), ct, Tag.PEER_SHARES, v)
        plain = SharePlain.unpack(codec.decode(raw), Tag.PEER_SHARES)
        if (plain.sender, plain.recipient) != (v, me):
            who = f"{plain.sender}->{plain.recipient}"
            raise ProtocolError(f"{Tag.PEER_SHARES}.boxes[{v}]: the share inside is for {who}")
        held[v] = plain
        pm = masks.expand(masks.pair_seed(mk.secret, mk.public, peers.keys[v].mask), vec.size)
        y = y + pm if setup.index < setup.neighbours[v] else y - pm
    session.send(agg, Tag.MASKED, Masked(y).pack())

    um = Unmask.unpack(session.recv(agg, Tag.UNMASK))
    _raise_abort(um.abort)
    _subset(dict.fromkeys(um.dropped + um.survivors), held, Tag.UNMASK, "survivors")
    if me in um.dropped:
        raise ProtocolError(f"{Tag.UNMASK}.dropped: lists this bank, which is present")
    reveal = Reveal(
        mask_keys={v: shamir.to_bytes(held[v].mask_key) for v in um.dropped},
        seeds={v: shamir.to_bytes(held[v].seed) for v in um.survivors},
    )
    session.send(agg, Tag.REVEAL, reveal.pack())
    res = Result.unpack(session.recv(agg, Tag.RESULT))
    _raise_abort(res.abort)
    return ClientResult(res.survivors, len(setup.neighbours))


def _int(b: bytes) -> int:
    return int.from_bytes(b, "little")


def _raise_abort(reason: str) -> None:
    if reason:
        raise RoundAborted(reason)


def _subset(got: Any, allowed: Any, tag: Tag, name: str) -> None:
    extra = set(got) - set(allowed)
    if extra:
        raise ProtocolError(f"{tag}.{name}: unexpected banks {sorted(extra)}")
