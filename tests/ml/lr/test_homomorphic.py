"""The HE seam of vertical LR: keys under the policy, the encrypted product [[d]] @ X
and its fast paths, masked decryption."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from veil.crypto.he import HEPublicKey, HEScheme, HESecretKey
from veil.errors import ConfigError, ProtocolError
from veil.ml.lr import _homomorphic as hom
from veil.policy import DEFAULT_POLICY, TEST_POLICY

Keys = tuple[HEPublicKey, HESecretKey]


@pytest.fixture(scope="module")
def ou_keys() -> Keys:
    return hom.keygen(HEScheme.OU, 1024, TEST_POLICY)


def test_keys_follow_the_policy(ou_keys: Keys) -> None:
    with pytest.raises(ConfigError, match=r"hetero_lr\.key_bits.*2048"):
        hom.keygen(HEScheme.OU, 1024, DEFAULT_POLICY)
    pk = ou_keys[0]
    assert hom.peer_key(pk.to_wire(), HEScheme.OU, 1024, TEST_POLICY) == pk
    with pytest.raises(ProtocolError, match="peer key"):  # below this party's policy
        hom.peer_key(pk.to_wire(), HEScheme.OU, 1024, DEFAULT_POLICY)
    with pytest.raises(ProtocolError, match="expected paillier"):
        hom.peer_key(pk.to_wire(), HEScheme.PAILLIER, 1024, TEST_POLICY)
    with pytest.raises(ProtocolError, match="expected ou-2048"):
        hom.peer_key(pk.to_wire(), HEScheme.OU, 2048, TEST_POLICY)
    strict = dataclasses.replace(TEST_POLICY, min_key_bits={"ou": 1536, "paillier": 512})
    with pytest.raises(ConfigError, match="1536"):
        hom.keygen(HEScheme.OU, 1024, strict)


def mixed_block(n: int, seed: int = 0) -> np.ndarray:
    """Continuous, binary, categorical, WOE-like and constant columns, clipped at 3."""
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            np.clip(rng.standard_normal(n), -3, 3),
            rng.integers(0, 2, n) - 0.5,
            rng.integers(0, 7, n) * 0.41 - 1.3,
            rng.choice([-0.83, -0.12, 0.07, 0.44, 1.9], n),
            np.ones(n),
            np.clip(rng.standard_normal(n) * 2, -3, 3),
        ]
    )


@pytest.mark.parametrize("bits", [8, 16])
def test_matmul_equals_the_engine_product(
    ou_keys: Keys, monkeypatch: pytest.MonkeyPatch, bits: int
) -> None:
    """Columns summed per value give the very ciphertexts Pippenger gives."""
    pk, sk = ou_keys
    X = mixed_block(300)
    d = np.random.default_rng(1).standard_normal(300)
    c = pk.encrypt(d)
    summed: list[int] = []
    value_sums = hom._value_sums
    monkeypatch.setattr(
        hom, "_value_sums", lambda c, cols: summed.append(len(cols)) or value_sums(c, cols)
    )
    got = hom.matmul(c, X, bits)
    assert summed == [4]  # the binary, categorical, WOE-like and constant columns
    want = c.matmul(X, bits=bits)
    assert got.frac_bits == want.frac_bits and got.bound == want.bound
    assert (got.ct == want.ct).all()
    # and it is d @ X up to rounding X to `bits` bits (|x| <= 3: steps of 2^-(bits-2))
    err = np.abs(d).sum() * 2.0 ** -(bits - 1)
    np.testing.assert_allclose(sk.decrypt(got), d @ X, atol=err)


@pytest.mark.parametrize("cols", [[0], [1, 2, 4], [0, 5]])
def test_matmul_on_one_kind_of_column(ou_keys: Keys, cols: list[int]) -> None:
    pk = ou_keys[0]
    X = mixed_block(200, seed=3)[:, cols]
    c = pk.encrypt(np.linspace(-1, 1, 200))
    for bits in (8, 16):
        assert (hom.matmul(c, X, bits).ct == c.matmul(X, bits=bits).ct).all()


def test_masked_product_round_trip(ou_keys: Keys) -> None:
    pk, sk = ou_keys
    X = mixed_block(100)
    d = np.random.default_rng(2).standard_normal(100)
    product = hom.matmul(pk.encrypt(d), X, 16)
    masked, r = hom.add_mask(product, TEST_POLICY.stat_sec)
    assert masked.bound == product.bound + (product.bound << TEST_POLICY.stat_sec)
    got = hom.unmask(hom.decrypt_bounded(sk, masked), r, masked.frac_bits)
    np.testing.assert_allclose(got, d @ X, atol=np.abs(d).sum() * 2.0**-15)
    # A value outside its declared bound (a crafted ciphertext) gets no answer.
    lying = type(masked)(pk, masked.ct, masked.frac_bits, True, 1)
    with pytest.raises(ProtocolError, match="outside its declared bound"):
        hom.decrypt_bounded(sk, lying)


def test_prefill_then_encrypt(ou_keys: Keys) -> None:
    """Randomisers made ahead (while a party waits) are what its next encryption uses."""
    pk, sk = ou_keys
    key = pk
    before = key.pool_size()
    prefill = hom.Prefill(pk)
    prefill.start(60)
    prefill.wait()
    assert key.pool_size() == before + 60
    x = np.linspace(-2, 2, 50)
    c = hom.encrypt(sk.public_key, x)
    assert key.pool_size() == before + 10
    assert c.pk == pk
    np.testing.assert_allclose(sk.decrypt(c), x, atol=1e-9)
    prefill.start(0)  # nothing to make: no background work
    prefill.wait()
    assert key.pool_size() == before + 10
