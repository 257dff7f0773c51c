"""EC suites the interconnection handshake can agree on, mapped onto :mod:`veil.crypto.ecc`.

Only ⟨Curve25519, SHA-256, DIRECT_HASH_AS_POINT_X, UNCOMPRESSED⟩ is offered: an id's
SHA-256 digest is the 32-byte little-endian X25519 u-coordinate, multiplied with
libsodium's X25519 — exactly :data:`veil.crypto.ecc.HASH_AS_X`, with truncation
keeping the *last* bytes of a point, as the reference peer does.

What this suite leaks beyond Veil's own ``ristretto255``: about half of all SHA-256
digests are u-coordinates on Curve25519 and half on its quadratic twist, X25519 keeps
a point on the one it started on, and anyone can tell which (a Legendre symbol). So
each party learns, for every id of the peer, intersection or not, whether its hash
lies on the curve or the twist: one bit per id. The standard fixes the suite, so the
interconnection wire keeps it; Veil-to-Veil PSI uses ristretto255.

SM2/SM3 is refused: no vetted SM2 implementation on PyPI exposes the point arithmetic
ECDH-PSI needs (``cryptography`` has SM3 but no SM2 curve; ``gmssl`` is pure Python and
unaudited; ``gmssl-python`` binds a system GmSSL without point multiplication).
"""

from __future__ import annotations

from dataclasses import dataclass

from veil.crypto import ecc
from veil.errors import ConfigError
from veil.protocols.interconnect.vocab import Curve, HashToCurve, HashType, PointFormat


@dataclass(frozen=True)
class IcSuite:
    """One ⟨curve, hash, hash-to-curve, point format⟩ of the standard and its Veil suite."""

    name: str
    curve: Curve
    hash: HashType
    hash_to_curve: HashToCurve
    point_format: PointFormat
    ecc_suite: ecc.Suite

    def triple(self) -> tuple[int, int, int]:
        """(curve, hash, hash2curve_strategy) as the handshake's EcSuit carries them."""
        return (int(self.curve), int(self.hash), int(self.hash_to_curve))

    @property
    def point_bytes(self) -> int:
        return self.ecc_suite.point_bytes


CURVE25519 = IcSuite(
    "25519",
    Curve.CURVE25519,
    HashType.SHA_256,
    HashToCurve.DIRECT_HASH_AS_POINT_X,
    PointFormat.UNCOMPRESSED,
    ecc.Suite(ecc.Group.CURVE25519_HASH_AS_X, ecc.Truncation.HIGH),
)
#: Suites Veil implements, by the name the CLI takes.
SUITES: dict[str, IcSuite] = {CURVE25519.name: CURVE25519}


def suite_named(name: str) -> IcSuite:
    """The suite called ``name``, or a ConfigError naming what is available."""
    try:
        return SUITES[name]
    except KeyError:
        why = " (no vetted SM2 implementation is available)" if name.lower() == "sm2" else ""
        raise ConfigError(
            "curve", f"unsupported curve '{name}'{why}", f"use one of {sorted(SUITES)}"
        ) from None
