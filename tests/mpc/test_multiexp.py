"""Shared-base multi-exponentiation (veil.mpc.multiexp) against Python's pow."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from gmpy2 import mpz

from veil.crypto.backend import LocalBackend
from veil.mpc.multiexp import pippenger_cost, shared_base_multi_exp, straus_cost


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(("rows", "k"), [(1, 1), (7, 5), (30, 24)])
def test_every_row_matches_pow(workers: int, rows: int, k: int) -> None:
    m = mpz(secrets.randbits(1024) | 1 | (1 << 1023))
    cols = [[mpz(secrets.randbelow(int(m))) for _ in range(k)] for _ in range(3)]
    E = np.random.default_rng(rows * k).integers(0, 2**64, (rows, k), dtype=np.uint64)
    E[0, 0] = 0
    E[-1, -1] = 2**64 - 1
    with LocalBackend(workers) as be:
        got = shared_base_multi_exp(be, cols, E, m)
    for col, out in zip(cols, got, strict=True):
        for i in range(rows):
            want = 1
            for j in range(k):
                want = want * pow(int(col[j]), int(E[i, j]), int(m)) % int(m)
            assert int(out[i]) == want


def test_it_is_chosen_only_where_it_is_cheaper() -> None:
    assert straus_cost(24, 24, 64)[0] < pippenger_cost(24, 24, 64) / 2  # a Gram's width
    assert straus_cost(2048, 14, 64)[0] > pippenger_cost(2048, 14, 64)  # a batch's rows
    with pytest.raises(ValueError, match="exponent columns"):
        shared_base_multi_exp(LocalBackend(1), [[mpz(3)]], np.zeros((2, 2), np.uint64), mpz(7))
