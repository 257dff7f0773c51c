"""The additive-HE operations SecureBoost needs, on Veil's HE engine.

SecureBoost packs its own plaintexts (``T = h << w | g`` per row, several bin
sums per ciphertext on the way back), so it uses the engine's raw layer: signed
integer encryption, decryption, and the ciphertext group (product = plaintext
sum). Per-bin sums go through ``EncryptedArray.group_sum`` (the engine's
parallel kernel); packing sums is ``c^(2^slot) * c'`` with gmpy2.

The engine is ``veil.crypto.he`` (Paillier with DJN randomisers, or OU). Where
it is not installed yet, Paillier falls back to ``phe`` (python-paillier):
correct, but its ``r^n`` encryption is some 30x slower.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import gmpy2
import numpy as np

from veil.errors import ConfigError, ProtocolError
from veil.ml.secureboost.params import HEScheme


def _engine() -> Any:
    try:  # imported by name: the engine lands on main in parallel with this module
        return importlib.import_module("veil.crypto.he")
    except ImportError:
        return None


def _policy(allow_small: bool) -> Any:
    engine = _engine()
    return engine.TEST_POLICY if allow_small else engine.DEFAULT_POLICY


class HEPublic:
    """A partner's view of the key: modulus, sizes, wire form, and group sums."""

    def __init__(self, scheme: HEScheme, pk: Any) -> None:
        self.scheme, self.pk = scheme, pk
        if isinstance(pk, int):  # phe fallback: Paillier modulus n
            self.n = pk
            self.modulus = gmpy2.mpz(pk) ** 2
            self.plain_bits = pk.bit_length() - 2
        else:
            self.modulus = pk.ct_modulus
            self.plain_bits = int(pk.plain_bits) - 1
        self.width = (int(self.modulus).bit_length() + 7) // 8
        self.key_bits = int(pk.bits) if not isinstance(pk, int) else pk.bit_length()

    def to_wire(self) -> dict[str, Any]:
        if isinstance(self.pk, int):
            return {"scheme": str(self.scheme), "n": self.pk, "fallback": "phe"}
        wire: dict[str, Any] = self.pk.to_wire()
        return wire

    @classmethod
    def from_wire(cls, obj: Any, allow_small: bool) -> HEPublic:
        try:
            scheme = HEScheme(obj["scheme"])
            if obj.get("fallback") == "phe":
                return cls(scheme, int(obj["n"]))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ProtocolError(f"bad public key message: {e}") from None
        engine = _engine()
        if engine is None:
            raise ConfigError("secureboost.he", "this party lacks veil.crypto", "upgrade Veil")
        return cls(scheme, engine.public_key_from_wire(obj, _policy(allow_small)))

    def check(self, cts: Sequence[int]) -> list[Any]:
        """Ciphertexts from the wire, each checked to lie in ``[1, modulus)``."""
        m = self.modulus
        out = [gmpy2.mpz(c) for c in cts]
        if any(not 0 < c < m for c in out):
            raise ProtocolError("ciphertext out of range for this key")
        return out

    def group_sum(
        self, cts: Sequence[Any], rows: np.ndarray, groups: np.ndarray, n_groups: int
    ) -> list[Any]:
        """out[k] = sum of cts[rows[i]] over (i, j) with groups[i, j] == k (< 0 skipped)."""
        flat_rows = np.broadcast_to(rows[:, None], groups.shape).ravel()
        flat_groups = groups.ravel()
        keep = flat_groups >= 0
        picked = np.empty(int(keep.sum()), dtype=object)
        arr = np.empty(len(cts), dtype=object)
        arr[:] = list(cts)
        picked[:] = arr[flat_rows[keep]]
        if isinstance(self.pk, int):
            return _group_product(list(picked), flat_groups[keep].tolist(), n_groups, self.modulus)
        ea = _engine().EncryptedArray(self.pk, picked, 0, False, 0)
        return list(ea.group_sum(flat_groups[keep].astype(np.int64), n_groups).ct)

    def pack(self, cts: Sequence[Any], slot: int, k: int) -> list[Any]:
        """Pack ``k`` sums per ciphertext: Enc(sum_j m_j << (j * slot)), Horner style."""
        mod, shift = self.modulus, gmpy2.mpz(1) << slot
        out = []
        for i in range(0, len(cts), k):
            chunk = cts[i : i + k]
            acc = chunk[-1]
            for c in reversed(chunk[:-1]):
                acc = gmpy2.powmod(acc, shift, mod) * c % mod
            out.append(acc)
        return out


def _group_product(a: list[Any], groups: list[int], n_groups: int, m: Any) -> list[Any]:
    acc: list[Any] = [gmpy2.mpz(1)] * n_groups
    for c, g in zip(a, groups, strict=True):
        acc[g] = acc[g] * c % m
    return acc


class HEKeys:
    """The label holder's key pair: encrypt packed rows, decrypt packed sums."""

    def __init__(self, scheme: HEScheme, bits: int, allow_small: bool = False) -> None:
        engine = _engine()
        if engine is not None:
            pk, self._sk = engine.generate_keypair(str(scheme), bits, policy=_policy(allow_small))
            self.public = HEPublic(scheme, pk)
            self._n = int(self._sk.plain_modulus())
            return
        if scheme != HEScheme.PAILLIER:
            raise ConfigError(
                "secureboost.he",
                f"'{scheme}' needs Veil's HE engine (veil.crypto.he)",
                "use he: paillier",
            )
        from phe import paillier

        self._phe_pk, self._phe_sk = paillier.generate_paillier_keypair(n_length=bits)
        self._n = int(self._phe_pk.n)
        self.public = HEPublic(scheme, self._n)

    def encrypt(self, values: Sequence[int]) -> list[Any]:
        """One fresh ciphertext per (signed) integer."""
        if self._engine_pk is None:
            n, enc = self._n, self._phe_pk.raw_encrypt
            return [enc(v % n) for v in values]
        ms = np.empty(len(values), dtype=object)
        ms[:] = list(values)
        return list(self._engine_pk.raw_encrypt(ms))

    @property
    def _engine_pk(self) -> Any:
        return None if isinstance(self.public.pk, int) else self.public.pk

    def decrypt(self, cts: Sequence[Any]) -> list[int]:
        """Signed plaintexts (centred lift of the residues)."""
        n, half = self._n, self._n // 2
        if self._engine_pk is None:
            raw = [self._phe_sk.raw_decrypt(int(c)) for c in cts]
        else:
            arr = np.empty(len(cts), dtype=object)
            arr[:] = list(cts)
            raw = self._sk.raw_decrypt(arr)
        return [m - n if m > half else m for m in raw]
