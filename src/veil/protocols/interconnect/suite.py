"""EC suites the interconnection handshake can agree on, and the ECDH operations of each.

Only ⟨Curve25519, SHA-256, DIRECT_HASH_AS_POINT_X, UNCOMPRESSED⟩ is offered: the item's
SHA-256 digest is taken as a 32-byte little-endian X25519 u-coordinate and multiplied by
the party's secret scalar with libsodium's X25519 (RFC 7748 clamping and top-bit masking
happen inside libsodium). This is exactly what SecretFlow's Curve25519 cryptor does.

SM2/SM3 is refused: no vetted SM2 implementation on PyPI exposes the point arithmetic
ECDH-PSI needs (``cryptography`` has SM3 but no SM2 curve; ``gmssl`` is pure Python and
unaudited; ``gmssl-python`` binds a system GmSSL without point multiplication).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nacl.bindings import crypto_scalarmult

from veil.errors import ConfigError, ProtocolError
from veil.protocols.interconnect.vocab import Curve, HashToCurve, HashType, PointFormat


@dataclass(frozen=True)
class EcSuite:
    """One ⟨curve, hash, hash-to-curve, point format⟩ combination and its point size."""

    name: str
    curve: Curve
    hash: HashType
    hash_to_curve: HashToCurve
    point_format: PointFormat
    point_bytes: int

    def triple(self) -> tuple[int, int, int]:
        return (int(self.curve), int(self.hash), int(self.hash_to_curve))


CURVE25519 = EcSuite(
    "25519",
    Curve.CURVE25519,
    HashType.SHA_256,
    HashToCurve.DIRECT_HASH_AS_POINT_X,
    PointFormat.UNCOMPRESSED,
    32,
)
#: Suites Veil implements, by the name the CLI takes.
SUITES: dict[str, EcSuite] = {CURVE25519.name: CURVE25519}


def suite_named(name: str) -> EcSuite:
    """The suite called ``name``, or a ConfigError naming what is available."""
    try:
        return SUITES[name]
    except KeyError:
        why = " (no vetted SM2 implementation is available)" if name.lower() == "sm2" else ""
        raise ConfigError(
            "curve", f"unsupported curve '{name}'{why}", f"use one of {sorted(SUITES)}"
        ) from None


class EcdhCipher:
    """This party's secret scalar for one run; hashes items to points and masks points.

    Pure computation, no I/O. The secret comes from the OS generator and never leaves.
    """

    def __init__(self, suite: EcSuite, secret: bytes) -> None:
        if suite != CURVE25519:
            raise ConfigError("suite", f"suite {suite.name} is not implemented")
        if len(secret) != 32:
            raise ConfigError("secret", "an X25519 scalar is 32 bytes")
        self.suite = suite
        self._secret = secret

    @staticmethod
    def new_secret() -> bytes:
        """A fresh 32-byte scalar from the OS generator."""
        return secrets.token_bytes(32)

    @staticmethod
    def hash_to_points(items: Iterable[bytes]) -> list[bytes]:
        """SHA-256 of each item, used directly as the u-coordinate (hash-as-x)."""
        return [hashlib.sha256(x).digest() for x in items]

    def mask(self, points: Sequence[bytes]) -> list[bytes]:
        """``k·P`` for every point (32-byte little-endian u in and out)."""
        k = self._secret
        try:
            return [crypto_scalarmult(k, p) for p in points]
        except Exception as e:  # libsodium refuses low-order points and bad lengths
            raise ProtocolError(f"peer sent an invalid Curve25519 point: {e}") from None

    def hash_and_mask(self, items: Iterable[bytes]) -> list[bytes]:
        """``k·H(x)`` for every item: the first-stage (``enc``) ciphertexts."""
        return self.mask(self.hash_to_points(items))
