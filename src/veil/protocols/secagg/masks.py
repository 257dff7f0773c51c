"""The arithmetic of secure aggregation: the ring, fixed-point quantisation, key
agreement, share encryption and mask expansion. Pure functions, no I/O.

Ring and precision: updates live in Z_{2^64} (numpy ``uint64``, whose arithmetic
wraps). A real value ``v`` is encoded as ``round(v * 2^frac_bits)`` in two's complement,
so with ``frac_bits`` fractional bits each coordinate of each contribution is off by at
most ``2^-(frac_bits+1)`` and a sum of ``n`` contributions by at most
``n * 2^-(frac_bits+1)``. A sum must stay below ``2^(63 - frac_bits)`` in absolute
value: :func:`quantize` refuses any contribution above ``2^(63 - frac_bits) / n``.

Masks: a 32-byte seed is stretched into ``dim`` uniform ring elements with the ChaCha20
stream cipher (OpenSSL via ``cryptography``; the seed is the key, the nonce is zero
because every seed is fresh and used once). A pairwise seed is BLAKE2b of the X25519
shared secret and both public keys (libsodium via PyNaCl). Shamir shares travel
encrypted with XSalsa20-Poly1305 (``nacl.secret.SecretBox``) under the X25519 key of
the two banks' encryption key pair, so the aggregator who routes them cannot read them.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from nacl.bindings import crypto_scalarmult
from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey
from nacl.secret import SecretBox

from veil.errors import ConfigError, ProtocolError

RING_BITS = 64
DEFAULT_FRAC_BITS = 24
KEY_BYTES = 32
_PAIR_PERSON = b"veil-secagg-pair"  # BLAKE2b personalisation (16 bytes)
_ZERO_NONCE = bytes(16)

Ring = npt.NDArray[np.uint64]


def bound(frac_bits: int, n_terms: int) -> float:
    """The largest absolute value one of ``n_terms`` contributions may hold so that
    their sum cannot wrap around the ring."""
    return float(2.0 ** (RING_BITS - 1 - frac_bits) / max(n_terms, 1))


def quantize(x: npt.ArrayLike, frac_bits: int, n_terms: int, what: str = "update") -> Ring:
    """Fixed-point ring encoding of ``x`` (see the module docstring)."""
    v = np.asarray(x, dtype=np.float64)
    if not np.isfinite(v).all():
        raise ConfigError(what, "contains NaN or infinity", "check the data and learning rate")
    lim = bound(frac_bits, n_terms)
    big = np.abs(v) >= lim
    if big.any():
        i = int(np.flatnonzero(big)[0])
        raise ConfigError(
            what,
            f"value {v.flat[i]:.4g} at position {i} is beyond the ring's range ±{lim:.4g} "
            f"({frac_bits} fractional bits, {n_terms} contributions)",
            "lower the learning rate, scale the features, or use fewer fractional bits",
        )
    q = np.rint(v * float(1 << frac_bits)).astype(np.int64)
    return q.view(np.uint64)


def dequantize(r: Ring, frac_bits: int) -> npt.NDArray[np.float64]:
    """The real values of ring elements encoded by :func:`quantize` (summed or not)."""
    return np.asarray(r, dtype=np.uint64).view(np.int64).astype(np.float64) / float(1 << frac_bits)


def expand(seed: bytes, dim: int) -> Ring:
    """``dim`` uniform ring elements from a 32-byte seed (ChaCha20 keystream)."""
    if len(seed) != KEY_BYTES:
        raise ValueError(f"a mask seed is {KEY_BYTES} bytes")
    enc = Cipher(algorithms.ChaCha20(seed, _ZERO_NONCE), mode=None).encryptor()
    stream = enc.update(bytes(8 * dim))
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64, copy=False)


class KeyPair:
    """An X25519 key pair (libsodium), fresh per round."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._sk = PrivateKey(secret) if secret is not None else PrivateKey.generate()

    @property
    def public(self) -> bytes:
        return bytes(self._sk.public_key)

    @property
    def secret(self) -> bytes:
        return bytes(self._sk)


def check_public_key(pk: object, tag: str, field: str) -> bytes:
    """A 32-byte X25519 public key from a peer message, or ProtocolError."""
    if not isinstance(pk, bytes) or len(pk) != KEY_BYTES:
        raise ProtocolError(f"{tag}.{field}: expected a {KEY_BYTES}-byte X25519 public key")
    return pk


def pair_seed(my_secret: bytes, my_public: bytes, peer_public: bytes) -> bytes:
    """The mask seed two banks share: BLAKE2b(X25519(sk, pk_peer) || both public keys).

    The public keys enter in sorted order, so both ends get the same seed."""
    shared = crypto_scalarmult(my_secret, peer_public)
    lo, hi = sorted((my_public, peer_public))
    return hashlib.blake2b(shared + lo + hi, digest_size=KEY_BYTES, person=_PAIR_PERSON).digest()


def share_box(my_secret: bytes, peer_public: bytes) -> SecretBox:
    """The authenticated cipher for shares between two banks (X25519 + XSalsa20-Poly1305)."""
    return SecretBox(Box(PrivateKey(my_secret), PublicKey(peer_public)).shared_key())


def open_box(box: SecretBox, ciphertext: object, tag: str, field: str) -> bytes:
    """Decrypt a share ciphertext, or ProtocolError naming where it came from."""
    if not isinstance(ciphertext, bytes):
        raise ProtocolError(f"{tag}.{field}: expected encrypted share bytes")
    try:
        return bytes(box.decrypt(ciphertext))
    except CryptoError:
        raise ProtocolError(
            f"{tag}.{field}: share does not decrypt (tampered or misrouted)"
        ) from None
