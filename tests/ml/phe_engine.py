"""A stand-in for ``veil.crypto.paillier`` built on python-paillier (``phe``).

Real Paillier encryption with the HE engine's array API, used by the LR tests
until (and unless) the engine from branch ``he`` is on main. Slow but genuine:
a test that reads the wire sees real ciphertexts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from phe import paillier

from veil.net.codec import IntArray


class PublicKey:
    def __init__(self, pk: paillier.PaillierPublicKey) -> None:
        self.pk = pk

    def encrypt(self, x: np.ndarray) -> EncryptedArray:
        return EncryptedArray(self, [self.pk.encrypt(float(v)) for v in np.ravel(x)])

    def to_wire(self) -> Any:
        return {"n": self.pk.n}

    @classmethod
    def from_wire(cls, obj: Any) -> PublicKey:
        return cls(paillier.PaillierPublicKey(int(obj["n"])))


class SecretKey:
    def __init__(self, sk: paillier.PaillierPrivateKey) -> None:
        self.sk = sk

    def decrypt(self, c: EncryptedArray) -> np.ndarray:
        return np.array([self.sk.decrypt(v) for v in c.items], dtype=np.float64)


class EncryptedArray:
    def __init__(self, pk: PublicKey, items: list[Any]) -> None:
        self.pk = pk
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: Any) -> EncryptedArray:
        return EncryptedArray(self.pk, [self.items[i] for i in np.asarray(idx)])

    def __add__(self, other: Any) -> EncryptedArray:
        if isinstance(other, EncryptedArray):
            vals = other.items
        else:
            vals = [float(v) for v in np.broadcast_to(other, (len(self),))]
        return EncryptedArray(self.pk, [a + b for a, b in zip(self.items, vals, strict=True)])

    def __mul__(self, other: Any) -> EncryptedArray:
        vals = np.broadcast_to(np.asarray(other, dtype=np.float64), (len(self),))
        return EncryptedArray(
            self.pk, [a * float(b) for a, b in zip(self.items, vals, strict=True)]
        )

    def __matmul__(self, X: np.ndarray) -> EncryptedArray:
        out = []
        for j in range(X.shape[1]):
            acc = None
            for c, x in zip(self.items, X[:, j], strict=True):
                t = c * float(x)
                acc = t if acc is None else acc + t
            out.append(acc)
        return EncryptedArray(self.pk, out)

    def to_wire(self) -> Any:
        w = (self.pk.pk.nsquare.bit_length() + 7) // 8
        return {
            "c": IntArray([v.ciphertext(be_secure=False) for v in self.items], w),
            "e": np.array([v.exponent for v in self.items], dtype=np.int64),
        }

    @classmethod
    def from_wire(cls, pk: PublicKey, obj: Any) -> EncryptedArray:
        items = [
            paillier.EncryptedNumber(pk.pk, int(c), int(e))
            for c, e in zip(obj["c"].values, obj["e"], strict=True)
        ]
        return cls(pk, items)


def generate_keypair(bits: int) -> tuple[PublicKey, SecretKey]:
    pk, sk = paillier.generate_paillier_keypair(n_length=bits)
    return PublicKey(pk), SecretKey(sk)
