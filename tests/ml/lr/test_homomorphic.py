"""The HE seam of vertical LR: the encrypted product [[d]] @ X and its fast paths."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from veil.crypto.he import HEScheme
from veil.ml import lr_he


@pytest.fixture(scope="module")
def ou_keys() -> tuple[Any, Any]:
    return lr_he.keygen(HEScheme.OU, 1024)


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
    ou_keys: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, bits: int
) -> None:
    """Columns summed per value give the very ciphertexts Pippenger gives."""
    pk, sk = ou_keys
    X = mixed_block(300)
    d = np.random.default_rng(1).standard_normal(300)
    c = pk.encrypt(d)
    summed: list[int] = []
    value_sums = lr_he._value_sums
    monkeypatch.setattr(
        lr_he, "_value_sums", lambda c, cols: summed.append(len(cols)) or value_sums(c, cols)
    )
    got = lr_he.matmul(c, X, bits)
    assert summed == [4]  # the binary, categorical, WOE-like and constant columns
    want = c.matmul(X, bits=bits)
    assert got.frac_bits == want.frac_bits and got.bound == want.bound
    assert (got.ct == want.ct).all()
    # and it is d @ X up to rounding X to `bits` bits (|x| <= 3: steps of 2^-(bits-2))
    err = np.abs(d).sum() * 2.0 ** -(bits - 1)
    np.testing.assert_allclose(sk.decrypt(got), d @ X, atol=err)


@pytest.mark.parametrize("cols", [[0], [1, 2, 4], [0, 5]])
def test_matmul_on_one_kind_of_column(ou_keys: tuple[Any, Any], cols: list[int]) -> None:
    pk = ou_keys[0]
    X = mixed_block(200, seed=3)[:, cols]
    c = pk.encrypt(np.linspace(-1, 1, 200))
    for bits in (8, 16):
        assert (lr_he.matmul(c, X, bits).ct == c.matmul(X, bits=bits).ct).all()


def test_masked_product_round_trip(ou_keys: tuple[Any, Any]) -> None:
    pk, sk = ou_keys
    X = mixed_block(100)
    d = np.random.default_rng(2).standard_normal(100)
    masked, r = lr_he.add_mask(lr_he.matmul(pk.encrypt(d), X, 16))
    got = lr_he.unmask(lr_he.decrypt_masked(sk, masked), r, masked.frac_bits)
    np.testing.assert_allclose(got, d @ X, atol=np.abs(d).sum() * 2.0**-15)


def test_prefill_then_encrypt(ou_keys: tuple[Any, Any]) -> None:
    """Randomisers made ahead (while a party waits) are what its next encryption uses."""
    pk, sk = ou_keys
    key = pk
    before = key.pool_size()
    prefill = lr_he.Prefill(sk)
    prefill.start(60)
    prefill.wait()
    assert key.pool_size() == before + 60
    x = np.linspace(-2, 2, 50)
    c = lr_he.encrypt(sk.public_key, x)
    assert key.pool_size() == before + 10
    assert c.pk == pk
    np.testing.assert_allclose(sk.decrypt(c), x, atol=1e-9)
    prefill.start(0)  # nothing to make: no background work
    prefill.wait()
    assert key.pool_size() == before + 10
