"""The additive-HE operations SecureBoost needs, over a vetted Paillier implementation.

Ciphertexts are plain integers modulo ``modulus`` (n^2 for Paillier), so the
partner-side work -- per-bin sums and packing several sums into one ciphertext --
is multiplication and squaring modulo ``modulus`` with gmpy2 (GMP). Key
generation, encryption and decryption come from ``phe`` (python-paillier); this
module invents nothing, it only batches. When Veil's own HE engine
(``veil.crypto``) lands, it replaces the key object here behind the same calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gmpy2
import numpy as np

from veil.errors import ConfigError, ProtocolError
from veil.ml.secureboost.params import HEScheme


@dataclass(frozen=True)
class HEPublic:
    """What a partner holds: the scheme and the plaintext modulus ``n``."""

    scheme: HEScheme
    n: int

    @property
    def modulus(self) -> int:
        return self.n * self.n

    @property
    def width(self) -> int:
        """Bytes per ciphertext on the wire."""
        return (self.modulus.bit_length() + 7) // 8

    @property
    def plain_bits(self) -> int:
        """Bits of a signed plaintext that decrypts unambiguously."""
        return self.n.bit_length() - 2

    def to_wire(self) -> dict[str, Any]:
        return {"scheme": str(self.scheme), "n": self.n}

    @classmethod
    def from_wire(cls, obj: Any) -> HEPublic:
        try:
            scheme, n = HEScheme(obj["scheme"]), int(obj["n"])
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"bad public key message: {e}") from None
        return cls(scheme, n)


class HEKeys:
    """The label holder's key pair: encrypt packed rows, decrypt packed sums."""

    def __init__(self, scheme: HEScheme, bits: int) -> None:
        if scheme != HEScheme.PAILLIER:
            raise ConfigError(
                "secureboost.he",
                f"'{scheme}' needs Veil's HE engine (veil.crypto), not merged yet",
                "use he: paillier",
            )
        from phe import paillier

        self._pk, self._sk = paillier.generate_paillier_keypair(n_length=bits)
        self.public = HEPublic(scheme, int(self._pk.n))

    def encrypt(self, values: Sequence[int]) -> list[int]:
        """One fresh ciphertext per (signed) integer."""
        n, enc = self.public.n, self._pk.raw_encrypt
        return [enc(v % n) for v in values]

    def decrypt(self, cts: Sequence[int]) -> list[int]:
        """Signed plaintexts (centred lift of the residues modulo n)."""
        n, half, dec = self.public.n, self.public.n // 2, self._sk.raw_decrypt
        out = []
        for c in cts:
            m = dec(int(c))
            out.append(m - n if m > half else m)
        return out


def group_sum(
    cts: Sequence[Any], rows: np.ndarray, groups: np.ndarray, n_groups: int, modulus: int
) -> list[Any]:
    """Homomorphic sums: out[k] = sum of cts[rows[i]] over entries with groups[i, j] == k.

    ``groups`` is (len(rows), m); entries < 0 are skipped. Empty groups hold 1
    (the trivial encryption of 0; only the key holder ever decrypts them).
    """
    mod = gmpy2.mpz(modulus)
    acc: list[Any] = [gmpy2.mpz(1)] * n_groups
    for r, gs in zip(rows.tolist(), groups.tolist(), strict=True):
        c = cts[r]
        for k in gs:
            if k >= 0:
                acc[k] = acc[k] * c % mod
    return acc


def pack(cts: Sequence[Any], slot: int, k: int, modulus: int) -> list[Any]:
    """Pack ``k`` sums per ciphertext: Enc(sum_j m_j << (j * slot)), Horner style."""
    mod, shift = gmpy2.mpz(modulus), gmpy2.mpz(1) << slot
    out = []
    for i in range(0, len(cts), k):
        chunk = cts[i : i + k]
        acc = chunk[-1]
        for c in reversed(chunk[:-1]):
            acc = gmpy2.powmod(acc, shift, mod) * c % mod
        out.append(acc)
    return out
