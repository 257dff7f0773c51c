"""The key exchange of the two-party HE protocols (:mod:`veil.mpc.he_triples`,
:mod:`veil.mpc.he_cross`): each party makes a Paillier or OU key pair and sends its
public key; party 0 also sends a 16-byte seed both then know (a common PRG stream that
re-randomises shares; it is public between the two and hides nothing from either).

Message: ``he_triple_key`` each way (public key; party 0's also the seed). What each
party learns: the other's public key and the common seed. Key sizes (and ``stat_sec``,
kept with the keys for the protocols that use them) come from
:class:`veil.policy.SecurityPolicy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from veil.crypto import he
from veil.errors import ConfigError, ProtocolError
from veil.mpc.channel import Channel, expect_bytes, expect_field
from veil.mpc.prg import SEED_BYTES, new_seed
from veil.policy import DEFAULT_POLICY, SecurityPolicy

__all__ = ["HEKeys", "Tag", "exchange_keys"]


class Tag(StrEnum):
    """The key exchange's message."""

    KEY = "he_triple_key"


@dataclass(frozen=True)
class HEKeys:
    """One party's side of a key exchange for two-party HE work: its key pair, the
    peer's public key and a seed both parties know (drawn by party 0)."""

    pk: he.HEPublicKey
    sk: he.HESecretKey
    peer_pk: he.HEPublicKey
    common: bytes
    stat_sec: int  # the policy's: statistical hiding of every mask made with these keys


def exchange_keys(
    ch: Channel,
    party: int,
    parties: tuple[str, str],
    *,
    scheme: str = "ou",
    key_bits: int = 2048,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> HEKeys:
    """Make this party's key pair and swap public keys (party 0 also sends the common
    seed): the ``he_triple_key`` message each way."""
    policy.check_key_bits(str(he.HEScheme(scheme)), key_bits, "triples.key_bits")
    pk, sk = he.generate_keypair(scheme, key_bits, policy=policy)
    peer = parties[1 - party]
    common = new_seed() if party == 0 else b""
    ch.send(peer, Tag.KEY, {"pk": pk.to_wire(), "seed": common})
    msg = ch.recv(peer, Tag.KEY)
    try:
        peer_pk = he.public_key_from_wire(expect_field(msg, Tag.KEY, "pk"), policy)
    except ConfigError as e:
        raise ProtocolError(f"{Tag.KEY}.pk: {e}") from None
    if party == 1:
        common = expect_bytes(expect_field(msg, Tag.KEY, "seed"), Tag.KEY, "seed", SEED_BYTES)
    if peer_pk.scheme != pk.scheme:
        raise ProtocolError(f"{Tag.KEY}.scheme: peer uses {peer_pk.scheme}, not {pk.scheme}")
    return HEKeys(pk, sk, peer_pk, common, policy.stat_sec)
