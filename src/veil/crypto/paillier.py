"""Paillier encryption with DJN-style fast randomisers [Paillier 1999; Damgard-Jurik-Nielsen 2010].

Keys: ``n = p q`` with ``|p| = |q|``, ``g = n + 1`` (the python-paillier convention, so the
two interoperate), decryption by CRT mod ``p^2`` and ``q^2``.

Encryption of ``m``: ``c = (1 + m n) * h_s^a mod n^2`` where ``h_s = (-x^2)^n mod n^2`` for
a random ``x`` (fixed per key, public) and ``a`` a fresh uniform exponent of ``2 lambda``
bits, ``lambda`` the security level of the modulus (:func:`security_bits`: 112 for 2048-bit
keys, so 224-bit exponents). This is the Damgard-Jurik-Nielsen randomiser (DJN 2010,
sec. 4), as in SecretFlow HEU's ZPaillier, with the exponent length chosen by the usual
short-exponent rule rather than DJN's ``k/2`` (HEU: 1024 bits). Security: ``h_s^a`` is an
``n``-th power like standard Paillier's ``r^n``; semantic security rests on DCR plus the
short-exponent indistinguishability assumption, and the best known attack on a
``2 lambda``-bit exponent (Pollard lambda / baby-step giant-step in the unknown-order group)
costs ``2**lambda`` -- the same 112 bits as factoring the 2048-bit ``n``, no shortcut
below the modulus's own level. ``h_s^a`` uses a fixed-base table (12-bit windows: 19
modular products per encryption, 40 MiB per 2048-bit key, built on first use in ~0.5 s,
see :mod:`veil.crypto._fixedbase`, run by the C kernel where built) instead of a 2048-bit
``r^n``. The process that holds the secret key makes its randomisers mod ``p^2`` and
``q^2`` and joins them (:mod:`veil.crypto._owner`): the same numbers, 1.5x cheaper.
Randomisers do not depend on the message, so ``pk.precompute(count)`` fills a pool ahead
of time (offline/online split); encrypting from the pool is one product.

What each party learns: the key holder learns every plaintext it decrypts; anyone holding
only the public key learns nothing about plaintexts (semantic security), but sees array
shapes and the public ``bound``/``frac_bits`` metadata of :class:`EncryptedArray`.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from veil.crypto import _owner
from veil.crypto._fixedbase import FixedBase
from veil.crypto._kernels import objects
from veil.crypto._native import kernel
from veil.crypto._scheme import (
    HEPublicKey,
    HESecretKey,
    check_backend,
    check_policy,
    security_bits,
)
from veil.crypto.backend import HEBackend
from veil.crypto.encrypted import EncryptedArray, concatenate
from veil.errors import ConfigError, ProtocolError
from veil.policy import DEFAULT_POLICY, TEST_POLICY, SecurityPolicy

__all__ = [
    "DEFAULT_POLICY",
    "TEST_POLICY",
    "EncryptedArray",
    "PublicKey",
    "SecretKey",
    "SecurityPolicy",
    "concatenate",
    "generate_keypair",
]

if TYPE_CHECKING:
    from veil.codec import WireValue

SCHEME = "paillier"
WINDOW = 12  # fixed-base window: 19 products per 224-bit exponent, 40 MiB table


class PublicKey(HEPublicKey):
    """Paillier public key ``(n, h_s)``; ``g = n + 1``."""

    scheme = SCHEME

    def __init__(self, n: int, hs: int, *, backend: HEBackend | None = None) -> None:
        self.n = mpz(n)
        self.n2 = self.n * self.n
        self.hs = mpz(hs)
        self.bits = int(self.n.bit_length())
        self.ct_modulus = self.n2
        self.ct_bytes = (int(self.n2.bit_length()) + 7) // 8
        self.plain_bound = int((self.n - 1) // 2)
        self.plain_bits = self.bits - 1
        self.rand_bits = 2 * security_bits(self.bits)
        self._table: FixedBase | None = None
        self._init_pool(backend)

    def __repr__(self) -> str:
        return f"<paillier.PublicKey {self.bits}-bit>"

    def table(self) -> FixedBase:
        with self._lock:
            if self._table is None:
                threads = self.backend.workers
                self._table = FixedBase(self.hs, self.n2, self.rand_bits, WINDOW, threads)
            return self._table

    def _fresh_randomisers(self, count: int) -> np.ndarray:
        owned = self._owner_randomisers("hs", count)
        return self.backend.random_pow(self.table(), count) if owned is None else owned

    def raw_plain(self, ms: np.ndarray) -> np.ndarray:
        n = self.n
        return objects([(mpz(m) % n) * n + 1 for m in ms])

    def to_wire(self) -> dict[str, WireValue]:
        return {"scheme": SCHEME, "n": int(self.n), "hs": int(self.hs)}

    @classmethod
    def from_wire(
        cls,
        obj: object,
        policy: SecurityPolicy = DEFAULT_POLICY,
        *,
        backend: HEBackend | None = None,
    ) -> PublicKey:
        """Public key from :meth:`to_wire`; checks size (against ``policy``) and ranges.
        Its batches run on ``backend`` (None: the default backend)."""
        check_policy(policy)
        if not isinstance(obj, dict):
            raise ProtocolError(f"malformed {SCHEME} public key: not a dict")
        try:
            if obj["scheme"] != SCHEME:
                raise ProtocolError(f"expected a {SCHEME} key, got {obj['scheme']!r}")
            n, hs = mpz(obj["n"]), mpz(obj["hs"])
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"malformed Paillier public key: {e}") from e
        policy.check_key_bits(SCHEME, int(n.bit_length()), "public_key.n")
        if n % 2 == 0 or not 1 < hs < n * n or gmpy2.gcd(hs, n) != 1:
            raise ProtocolError("Paillier public key fails its sanity checks")
        return cls(n, hs, backend=backend)


class SecretKey(HESecretKey):
    """Paillier secret key (``p``, ``q`` and CRT constants); never printed."""

    public_key: PublicKey

    def __init__(self, public_key: PublicKey, p: int, q: int) -> None:
        self.public_key = public_key
        self._p, self._q = mpz(p), mpz(q)
        if self._p * self._q != public_key.n:
            raise ConfigError("p, q", "do not factor the public modulus", "")
        self._p2, self._q2 = self._p * self._p, self._q * self._q
        g = public_key.n + 1
        self._hp = gmpy2.invert(self._l(gmpy2.powmod(g, self._p - 1, self._p2), self._p), self._p)
        self._hq = gmpy2.invert(self._l(gmpy2.powmod(g, self._q - 1, self._q2), self._q), self._q)
        self._q_inv = gmpy2.invert(self._q, self._p)
        if kernel() is not None:  # this process may encrypt mod p^2 and q^2 (veil.crypto._owner)
            pk = public_key
            bases = {"hs": (pk.hs, pk.rand_bits, WINDOW)}
            pk._owner = _owner.CRTTables(self._p2, self._q2, bases, pk.backend.workers)

    @staticmethod
    def _l(x: Any, p: Any) -> Any:
        return (x - 1) // p

    def raw_decrypt(self, cts: np.ndarray, span: int) -> tuple[list[int], int]:
        """CRT decryption; when every plaintext fits below ``p`` (``span <= p``, the usual
        case for tracked fixed-point values) only the ``p`` half is computed: 2x faster."""
        p, p2 = self._p, self._p2
        be = self.public_key.backend
        xp = be.powmod_base_list([c % p2 for c in cts], p - 1, p2)
        hp = self._hp
        mps = [(a - 1) // p * hp % p for a in xp]
        if span <= p:
            return [int(v) for v in mps], int(p)
        q, q2, hq, q_inv = self._q, self._q2, self._hq, self._q_inv
        xq = be.powmod_base_list([c % q2 for c in cts], q - 1, q2)
        out = []
        for mp, b in zip(mps, xq, strict=True):
            mq = (b - 1) // q * hq % q
            out.append(int(mq + q * ((mp - mq) * q_inv % p)))
        return out, int(self.public_key.n)


def _prime(bits: int) -> mpz:
    while True:
        cand = mpz(secrets.randbits(bits) | (3 << (bits - 2)) | 1)
        p = gmpy2.next_prime(cand - 2)
        if p.bit_length() == bits:
            return p


def generate_keypair(
    bits: int = 2048,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
    backend: HEBackend | None = None,
) -> tuple[PublicKey, SecretKey]:
    """New Paillier key pair with a ``bits``-bit modulus (>= 2048 unless ``policy`` allows)."""
    check_policy(policy).check_key_bits(SCHEME, bits, "bits")
    check_backend(backend)
    while True:
        p, q = _prime(bits // 2), _prime(bits - bits // 2)
        n = p * q
        if p != q and n.bit_length() == bits and gmpy2.gcd(n, (p - 1) * (q - 1)) == 1:
            break
    x = mpz(secrets.randbelow(int(n) - 2) + 2)
    while gmpy2.gcd(x, n) != 1:
        x += 1
    h = (-x * x) % n
    hs = gmpy2.powmod(h, n, n * n)
    pk = PublicKey(n, hs, backend=backend)
    return pk, SecretKey(pk, p, q)
