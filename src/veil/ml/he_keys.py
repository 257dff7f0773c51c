"""HE key pairs and received public keys under a :class:`~veil.policy.SecurityPolicy`.

The one place where the ML protocols (federated binning, SecureBoost) hand the
policy to the crypto layer: a key is made, or accepted from a peer, only if its
modulus meets ``policy.min_key_bits`` for its scheme.
"""

from __future__ import annotations

from typing import Any

from veil.crypto import he as engine
from veil.crypto.he import HEScheme
from veil.errors import ProtocolError
from veil.policy import SecurityPolicy

__all__ = ["generate_keypair", "public_key_from_wire"]


def generate_keypair(
    scheme: HEScheme | str, bits: int, policy: SecurityPolicy, field: str = "key_bits"
) -> tuple[engine.HEPublicKey, engine.HESecretKey]:
    """A fresh key pair; a :class:`~veil.errors.ConfigError` naming ``field`` if
    ``bits`` is below the policy's minimum for ``scheme``."""
    name = HEScheme(scheme).value
    policy.check_key_bits(name, bits, field)
    return engine.generate_keypair(name, bits, policy=policy)


def public_key_from_wire(obj: Any, policy: SecurityPolicy) -> engine.HEPublicKey:
    """A peer's public key; ``ProtocolError`` if malformed, ``ConfigError`` if too short."""
    if not isinstance(obj, dict) or not isinstance(obj.get("scheme"), str):
        raise ProtocolError("malformed public key: no scheme")
    return engine.public_key_from_wire(obj, policy)
