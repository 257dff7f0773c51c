"""Test-only HE backend over python-paillier, shaped like ``veil.crypto.he``.

Used only while ``veil.crypto.he`` is not on this branch: real Paillier
(phe's keygen and raw encryption, gmpy2 arithmetic), integer labels only.
"""

from __future__ import annotations

from typing import Any

import gmpy2
import numpy as np
import phe

from veil.net.codec import IntArray


class PublicKey:
    def __init__(self, inner: phe.PaillierPublicKey) -> None:
        self.inner = inner
        self.nsq = gmpy2.mpz(inner.nsquare)
        self.width = (inner.nsquare.bit_length() + 7) // 8

    def encrypt(self, x: Any) -> EncryptedArray:
        vals = np.asarray(x)
        if not np.all(vals == np.round(vals)):
            raise ValueError("test backend encrypts integers only")
        n = self.inner.n
        return EncryptedArray(
            self, [gmpy2.mpz(self.inner.raw_encrypt(int(v) % n)) for v in vals.tolist()]
        )

    def to_wire(self) -> dict[str, Any]:
        return {"scheme": "paillier", "n": str(self.inner.n)}

    @classmethod
    def from_wire(cls, obj: dict[str, Any], policy: Any = None) -> PublicKey:
        return cls(phe.PaillierPublicKey(int(obj["n"])))


class PrivateKey:
    def __init__(self, pk: PublicKey, inner: phe.PaillierPrivateKey) -> None:
        self.pk, self.inner = pk, inner

    def decrypt(self, c: EncryptedArray) -> np.ndarray:
        n = self.pk.inner.n
        out = []
        for v in c.values:
            m = self.inner.raw_decrypt(int(v))
            out.append(m - n if m > n // 2 else m)
        return np.asarray(out, dtype=np.float64)


class EncryptedArray:
    def __init__(self, pk: PublicKey, values: list[Any]) -> None:
        self.pk, self.values = pk, values

    def __len__(self) -> int:
        return len(self.values)

    def group_sum(self, groups: np.ndarray, n_groups: int) -> EncryptedArray:
        acc = [gmpy2.mpz(1)] * n_groups
        nsq = self.pk.nsq
        for g, v in zip(np.asarray(groups).tolist(), self.values, strict=True):
            if g >= 0:
                acc[g] = gmpy2.f_mod(acc[g] * v, nsq)
        return EncryptedArray(self.pk, acc)

    def rerandomize(self) -> EncryptedArray:
        nsq = self.pk.nsq
        zeros = self.pk.encrypt(np.zeros(len(self.values), dtype=np.int64)).values
        return EncryptedArray(
            self.pk, [gmpy2.f_mod(a * z, nsq) for a, z in zip(self.values, zeros, strict=True)]
        )

    def to_wire(self) -> IntArray:
        return IntArray([int(v) for v in self.values], self.pk.width)

    @classmethod
    def from_wire(cls, pk: PublicKey, obj: IntArray) -> EncryptedArray:
        return cls(pk, [gmpy2.mpz(v) for v in obj.values])


def public_key_from_wire(obj: dict[str, Any], policy: Any = None) -> PublicKey:
    return PublicKey.from_wire(obj, policy)


def generate_keypair(he: str, bits: int, policy: Any = None) -> tuple[PublicKey, PrivateKey]:
    assert he == "paillier"
    pub, priv = phe.generate_paillier_keypair(n_length=bits)
    pk = PublicKey(pub)
    return pk, PrivateKey(pk, priv)
