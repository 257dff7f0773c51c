"""Scheme selection: algorithms take ``he: HEScheme`` ("paillier" | "ou") and call through here.

>>> scheme = get_scheme("ou")
>>> pk, sk = scheme.generate_keypair(2048)

Both schemes share :class:`~veil.crypto.encrypted.EncryptedArray` and the same key API
(``encrypt``, ``encrypt_packed``, ``pack_spec``, ``precompute``, ``to_wire``; ``decrypt``,
``decrypt_packed``). Paillier has a 2047-bit plaintext space; OU (faster, ~681-bit
plaintexts, not CCA-safe: read :mod:`veil.crypto.ou`) suits SecureBoost and binning.
"""

from __future__ import annotations

from enum import StrEnum
from types import ModuleType
from typing import Any

from veil.crypto import ou, paillier
from veil.crypto._parallel import get_workers, set_workers
from veil.crypto._scheme import DEFAULT_POLICY, TEST_POLICY, HEPublicKey, HESecretKey, KeyPolicy
from veil.crypto.encoding import DEFAULT_FRAC_BITS, HEOverflowError, PackSpec
from veil.crypto.encrypted import EncryptedArray, concatenate
from veil.errors import ConfigError, ProtocolError

__all__ = [
    "DEFAULT_FRAC_BITS",
    "DEFAULT_POLICY",
    "TEST_POLICY",
    "EncryptedArray",
    "HEOverflowError",
    "HEPublicKey",
    "HEScheme",
    "HESecretKey",
    "KeyPolicy",
    "PackSpec",
    "concatenate",
    "generate_keypair",
    "get_scheme",
    "get_workers",
    "public_key_from_wire",
    "set_workers",
]


class HEScheme(StrEnum):
    PAILLIER = "paillier"
    OU = "ou"


_MODULES: dict[HEScheme, ModuleType] = {HEScheme.PAILLIER: paillier, HEScheme.OU: ou}


def get_scheme(name: str | HEScheme) -> ModuleType:
    """The scheme module (``paillier`` or ``ou``) for a job's ``he`` parameter."""
    try:
        return _MODULES[HEScheme(name)]
    except ValueError:
        raise ConfigError(
            "he", f"unknown scheme {name!r}", f"use one of {[s.value for s in HEScheme]}"
        ) from None


def generate_keypair(
    he: str | HEScheme = HEScheme.PAILLIER, bits: int = 2048, *, policy: KeyPolicy = DEFAULT_POLICY
) -> tuple[HEPublicKey, HESecretKey]:
    """Key pair of the named scheme."""
    pk, sk = get_scheme(he).generate_keypair(bits, policy=policy)
    return pk, sk


def public_key_from_wire(obj: Any, policy: KeyPolicy = DEFAULT_POLICY) -> HEPublicKey:
    """Rebuild a public key of either scheme from ``pk.to_wire()``."""
    if not isinstance(obj, dict) or "scheme" not in obj:
        raise ProtocolError("malformed public key: no scheme")
    try:
        mod = get_scheme(obj["scheme"])
    except ConfigError as e:
        raise ProtocolError(f"malformed public key: {e}") from e
    pk: HEPublicKey = mod.PublicKey.from_wire(obj, policy)
    return pk
