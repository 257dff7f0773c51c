"""Seeded pseudorandom words: AES-256-CTR keyed per stream by HKDF-SHA256 (``cryptography``).

A 16-byte seed (drawn with :func:`new_seed` from the OS generator via ``secrets``) stands
for as many uniform ``uint64`` words as a protocol needs: party A can give party B a
whole share by sending only the seed, and a dealer can hand each party its part of many
Beaver triples with one seed per party (Boyle, Gilboa and Ishai's "seed compression" of
correlated randomness; SecureML's offline phase uses the same trick for input masks).

Each named *stream* of a seed has its own AES key ``HKDF-SHA256(seed, info=label)``
(RFC 5869) and runs AES-CTR from counter 0 (NIST SP 800-38A), so streams with different
labels are independent and a stream is reproducible from the seed and the label alone.
Whoever holds the seed can recompute every stream of it; nobody else learns anything
about the words (AES as a pseudorandom permutation, 128-bit-security seeds).
"""

from __future__ import annotations

import secrets

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veil.errors import ConfigError
from veil.mpc.ring import Share

__all__ = ["PRG", "SEED_BYTES", "new_seed"]

SEED_BYTES = 16
_ZERO_IV = bytes(16)


def new_seed() -> bytes:
    """A fresh uniformly random 16-byte seed (the OS generator, via ``secrets``)."""
    return secrets.token_bytes(SEED_BYTES)


class PRG:
    """Uniform ``uint64`` words from a seed, in independent labelled streams."""

    __slots__ = ("_seed",)

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
            raise ConfigError("seed", f"must be {SEED_BYTES} bytes", "draw it with new_seed()")
        self._seed = seed

    def __repr__(self) -> str:
        return "PRG(<seed hidden>)"

    def _key(self, label: str) -> bytes:
        kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode())
        return kdf.derive(self._seed)

    def words(self, label: str, shape: int | tuple[int, ...]) -> Share:
        """The first ``prod(shape)`` words of stream ``label``, as a ``uint64`` array."""
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        if any(d < 0 for d in dims):
            raise ConfigError("shape", f"negative dimension in {dims}")
        n = int(np.prod(dims, dtype=np.int64))
        enc = Cipher(algorithms.AES(self._key(label)), modes.CTR(_ZERO_IV)).encryptor()
        raw = enc.update(bytes(8 * n)) + enc.finalize()
        return np.frombuffer(raw, dtype="<u8").astype(np.uint64).reshape(dims)

    def below(self, label: str, count: int, bits: int) -> list[int]:
        """``count`` uniform integers below ``2^bits`` from stream ``label`` (each from
        ``ceil(bits / 64)`` words, little-endian, the bits above ``bits`` dropped)."""
        w = self.words(label, (count, -(-bits // 64)))
        top = (1 << bits) - 1
        return [int.from_bytes(r.tobytes(), "little") & top for r in w]
