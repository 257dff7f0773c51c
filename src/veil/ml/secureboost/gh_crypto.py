"""Encrypted gradient/hessian pairs: the additive-HE operations SecureBoost needs.

Runs on Veil's HE engine (:mod:`veil.crypto.he`); keys follow a
:class:`~veil.policy.SecurityPolicy` through :mod:`veil.ml.he_keys`.

SecureBoost packs its own plaintexts (``T = h << w | g`` per row, several bin
sums per ciphertext on the way back), so it uses the engine's raw layer: signed
integer encryption and decryption, and the ciphertext group (product = plaintext
sum). Per-bin sums go through ``EncryptedArray.group_sum`` (the engine's kernel);
packing sums is ``c^(2^slot) * c'`` (``E(a)^k = E(k a)``), the engine's ``fold_chunks``.
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2
import numpy as np

from veil.crypto import he as engine
from veil.crypto.encrypted import EncryptedArray
from veil.crypto.he import HEScheme
from veil.crypto.kernels import BigInt, mulmod_list, objects
from veil.crypto.packing import fold_chunks
from veil.errors import ProtocolError
from veil.ml import he_keys
from veil.policy import SecurityPolicy

__all__ = ["HEKeys", "HEPublic", "as_objects"]


def as_objects(values: Sequence[BigInt]) -> np.ndarray:
    """A 1-D object array of big integers (ciphertexts), without numpy probing each."""
    return objects(list(values))


class HEPublic:
    """A partner's view of the key: modulus, sizes, group sums and packing."""

    def __init__(self, pk: engine.HEPublicKey) -> None:
        self.pk = pk
        self.scheme = HEScheme(pk.scheme)
        self.modulus = pk.ct_modulus
        self.plain_bits = int(pk.plain_bits) - 1  # signed values decode unambiguously
        self.width = int(pk.ct_bytes)
        self.key_bits = int(pk.bits)

    def check(self, cts: Sequence[int]) -> list[BigInt]:
        """Ciphertexts from the wire, each checked to lie in ``[1, modulus)``."""
        m = self.modulus
        out = [gmpy2.mpz(c) for c in cts]
        if any(not 0 < c < m for c in out):
            raise ProtocolError("ciphertext out of range for this key")
        return out

    def group_sum(
        self,
        cts: Sequence[BigInt] | np.ndarray,
        rows: np.ndarray,
        groups: np.ndarray,
        n_groups: int,
    ) -> list[BigInt]:
        """out[k] = sum of cts[rows[i]] over (i, j) with groups[i, j] == k (< 0 skipped).

        Runs column by column on the engine's kernel (whole columns per worker process, the
        row ciphertexts shipped once): each column's groups are renumbered densely first.
        """
        g = np.asarray(groups, dtype=np.int64).reshape(len(rows), -1)
        if g.size and g.max() >= n_groups:
            raise ValueError(f"group {g.max()} >= n_groups={n_groups}")
        local = np.full(g.shape, -1, dtype=np.int64)
        ids: list[np.ndarray] = []
        seen = np.zeros(n_groups + 1, dtype=bool)  # index n_groups: the skipped (< 0)
        for j in range(g.shape[1]):  # dense renumbering in O(rows), no sort
            col = np.where(g[:, j] >= 0, g[:, j], n_groups)
            seen[:] = False
            seen[col] = True
            seen[n_groups] = False
            uniq = np.flatnonzero(seen)
            rank = np.cumsum(seen) - 1
            local[:, j] = np.where(col < n_groups, rank[col], -1)
            ids.append(uniq)
        width = max((len(u) for u in ids), default=0)
        arr = cts if isinstance(cts, np.ndarray) else as_objects(cts)
        picked = arr[np.asarray(rows, dtype=np.int64)]
        ea = EncryptedArray(self.pk, picked, 0, False, 0)
        res = ea.group_sum(local, width).ct.tolist() if width else []
        out: list[BigInt] = [gmpy2.mpz(1)] * n_groups
        mod = self.modulus
        for j, uniq in enumerate(ids):
            for u, k in enumerate(uniq.tolist()):
                c = res[j * width + u]
                out[k] = c if out[k] == 1 else out[k] * c % mod
        return out

    def add(self, a: Sequence[BigInt], b: Sequence[BigInt]) -> list[BigInt]:
        """Element-wise sum of two ciphertext lists (product mod the modulus)."""
        return mulmod_list(list(a), list(b), self.modulus)

    def pack(self, cts: Sequence[BigInt], slot: int, k: int) -> list[BigInt]:
        """Pack ``k`` sums per ciphertext: Enc(sum_j m_j << (j * slot)), Horner style."""
        chunks = [list(cts[i : i + k]) for i in range(0, len(cts), k)]
        return fold_chunks(chunks, slot, self.modulus)


class HEKeys:
    """The label holder's key pair: encrypt packed rows, decrypt packed sums."""

    def __init__(self, scheme: HEScheme, bits: int, policy: SecurityPolicy) -> None:
        pk, self._sk = he_keys.generate_keypair(scheme, bits, policy, "secureboost.key_bits")
        self.public = HEPublic(pk)

    def precompute(self, count: int) -> None:
        """Fill the randomiser pool (offline phase) for ``count`` later encryptions."""
        self.public.pk.precompute(count)

    def precompute_async(self, count: int) -> None:
        """Fill the randomiser pool in the background (encryption takes from it first)."""
        self.public.pk.precompute_async(count)

    def encrypt(self, values: Sequence[int]) -> list[BigInt]:
        """One fresh ciphertext per (signed) integer."""
        return list(self.public.pk.raw_encrypt(as_objects(values)))

    def decrypt(self, cts: Sequence[BigInt], value_bits: int) -> list[int]:
        """Signed plaintexts ``|v| < 2**value_bits`` (centred lift of the residues)."""
        res, n = self._sk.raw_decrypt(as_objects(cts), (1 << (value_bits + 1)) + 1)
        half = n // 2
        return [m - n if m > half else m for m in res]
