"""Key-owner encryption through the CRT: the same ciphertexts as the public-key path,
and the factors never leave the key objects."""

from __future__ import annotations

import os

import gmpy2
import numpy as np
import pytest

from veil.crypto import _native, ou, paillier
from veil.crypto.encrypted import EncryptedArray
from veil.policy import TEST_POLICY

pytestmark = pytest.mark.skipif(_native.kernel() is None, reason=_native.status())


@pytest.fixture(scope="module", params=["ou", "paillier"])
def owner_keys(request):
    mod = {"ou": ou, "paillier": paillier}[request.param]
    pk, sk = mod.generate_keypair(1024, policy=TEST_POLICY)
    return mod, pk, sk


def test_owner_key_has_crt_tables_public_copy_has_none(owner_keys):
    mod, pk, sk = owner_keys
    assert pk._owner is not None
    pub = mod.PublicKey.from_wire(pk.to_wire(), TEST_POLICY)
    assert pub._owner is None and pub == pk
    # the factors are in no repr and not on the wire
    wire = pk.to_wire()
    text = repr(pk) + repr(pk._owner) + repr(sk) + str(wire)
    for secret in (pk._owner.m1, pk._owner.m2):
        assert str(int(secret)) not in text
    assert set(wire) <= {"scheme", "n", "G", "H", "p_bits", "hs"}


def test_owner_chain_equals_public_chain(owner_keys):
    """Same exponents give the very same ciphertext numbers by CRT as mod the modulus."""
    mod, pk, _ = owner_keys
    name = "H" if mod is ou else "hs"
    table = pk._table("H") if mod is ou else pk.table()
    crt = pk._owner.table(name)
    assert crt.window == table.window and crt.n_windows == table.n_windows
    digits = crt.random_digits(50, os.urandom(50 * -(-crt.exp_bits // 8)))
    assert pk._owner.chain([(name, digits)]).tolist() == table.pow_digits(digits).tolist()
    start = np.array([gmpy2.mpz(v) for v in range(3, 53)], dtype=object)
    got = pk._owner.chain([(name, digits)], start)
    want = [s * c % pk.ct_modulus for s, c in zip(start, table.pow_digits(digits), strict=True)]
    assert got.tolist() == want
    empty = np.zeros((50, 0), dtype=np.int64)  # a leading part with no windows
    lead = pk._owner.chain([(name, empty), (name, digits)])
    assert lead.tolist() == table.pow_digits(digits).tolist()
    assert pk._owner.chain([(name, empty)]).tolist() == [1] * 50


@pytest.mark.parametrize("pooled", [False, True])
def test_owner_encryption_round_trips(owner_keys, pooled):
    mod, pk, sk = owner_keys
    pub = mod.PublicKey.from_wire(pk.to_wire(), TEST_POLICY)
    x = np.array([0.0, 1.5, -2.25, 1e9, -1e-9, 3.0, -7.0] * 50)
    if pooled:
        pk.precompute(100)  # part pooled, part fresh
    c = pk.encrypt(x)
    assert pk.pool_size() == 0
    np.testing.assert_allclose(sk.decrypt(c), x, atol=1e-9)
    np.testing.assert_allclose(sk.decrypt(c + pub.encrypt(x)), 2 * x, atol=1e-9)
    np.testing.assert_allclose(sk.decrypt(c - x), 0 * x, atol=1e-9)
    ints = np.array([0, 2**70, -(2**70), 5], dtype=object)  # beyond int64: the wide path
    got = sk.decrypt(pk.encrypt(ints))
    assert [int(v) for v in got] == [0, 2**70, -(2**70), 5]
    # ciphertexts are fresh: the same value twice gives two different numbers
    again = pk.encrypt(x[:5])
    assert all(a != b for a, b in zip(again.ct, pk.encrypt(x[:5]).ct, strict=True))
    wire = EncryptedArray.from_wire(pub, c.to_wire())
    np.testing.assert_allclose(sk.decrypt(wire), x, atol=1e-9)
