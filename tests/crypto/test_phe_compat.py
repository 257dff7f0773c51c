"""Veil Paillier is standard Paillier (g = n + 1): python-paillier decrypts ours and back."""

from __future__ import annotations

import numpy as np
import phe

from veil.crypto.encrypted import EncryptedArray


def test_phe_decrypts_veil_and_veil_decrypts_phe(paillier_keys):
    pk, sk = paillier_keys
    phe_pub = phe.PaillierPublicKey(int(pk.n))
    phe_priv = phe.PaillierPrivateKey(phe_pub, int(sk._p), int(sk._q))
    vals = [0, 1, 12345, -77, 2**60]
    c = pk.encrypt(np.array(vals, dtype=object))
    for v, ct in zip(vals, c.ct, strict=True):
        enc = phe.EncryptedNumber(phe_pub, int(ct), 0)
        assert phe_priv.decrypt(enc) == v
    theirs = [phe_pub.encrypt(v, precision=1).ciphertext(be_secure=False) for v in vals]
    arr = np.empty(len(vals), dtype=object)
    arr[:] = theirs
    mine = EncryptedArray(pk, arr, 0, False, 2**60)
    assert list(sk.decrypt(mine)) == vals
    # homomorphic ops mix: Veil ciphertext + phe ciphertext
    mixed = sk.decrypt(c + mine)
    assert list(mixed) == [2 * v for v in vals]
