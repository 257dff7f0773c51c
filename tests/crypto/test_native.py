"""The C kernel (``_gmpkernel``): same results as gmpy2 and the Python loops, bad input
refused, and the pure-Python fallback selectable."""

from __future__ import annotations

import os

import gmpy2
import numpy as np
import pytest
from gmpy2 import mpz
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.crypto import _native, ou, paillier
from veil.crypto._fixedbase import FixedBase
from veil.policy import TEST_POLICY

k = _native.kernel()
needs_kernel = pytest.mark.skipif(k is None, reason=_native.status())


@pytest.fixture
def python_only(monkeypatch):
    """Run the pure-Python kernels (as a machine without a C compiler does)."""
    monkeypatch.setenv("VEIL_NATIVE", "0")
    _native.reset()
    yield
    monkeypatch.delenv("VEIL_NATIVE")
    _native.reset()


def test_kernel_is_built_where_ci_runs():
    # CI has a C compiler: a silently missing kernel would hide a 1.3-1.5x slowdown
    if os.environ.get("CI") == "true" and os.environ.get("VEIL_NATIVE", "1") != "0":
        assert k is not None, _native.status()
    assert _native.status()


def test_python_only_is_selectable(python_only):
    assert _native.kernel() is None
    assert "VEIL_NATIVE=0" in _native.status()


@needs_kernel
@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(3, 700),
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(0, 6),
    width=st.integers(1, 4),
    size=st.integers(1, 9),
)
def test_mont_chain_matches_gmpy2(bits, seed, count, width, size):
    rng = np.random.default_rng(seed)
    m = mpz(int(rng.integers(0, 2**62)) << max(0, bits - 62)) | (1 << (bits - 1)) | 1
    steps = [mpz(int(rng.integers(0, 2**62))) ** 12 + 2 for _ in range(width)]
    rows = [k.mont_row(m, s, size) for s in steps]
    digits = rng.integers(0, size, size=(count, width)).astype(np.int64)
    want = []
    for row in digits.tolist():
        acc = mpz(1)
        for s, d in zip(steps, row, strict=True):
            acc = acc * gmpy2.powmod(s, d, m) % m
        want.append(acc)
    assert k.mont_chain(m, rows, digits) == want
    first = k.mont_row(m, steps[0], size, True)
    assert k.mont_chain(m, rows, digits, None, first) == want
    start = [mpz(int(v)) ** 5 for v in rng.integers(0, 2**62, size=count)]
    assert k.mont_chain(m, rows, digits, start) == [
        s * w % m for s, w in zip(start, want, strict=True)
    ]


@needs_kernel
@settings(max_examples=40, deadline=None)
@given(b1=st.integers(2, 400), b2=st.integers(1, 400), seed=st.integers(0, 2**32 - 1))
def test_crt_join_matches_gmpy2(b1, b2, seed):
    rng = np.random.default_rng(seed)

    def rand(bits):
        return mpz(int.from_bytes(rng.bytes(bits // 8 + 1), "little")) >> (8 - bits % 8)

    m1 = rand(b1) | (1 << (b1 - 1)) | 1
    m2 = rand(b2) | 1
    while gmpy2.gcd(m1, m2) != 1:
        m2 += 2
    x = [rand(b1 + b2) % (m1 * m2) for _ in range(5)]
    got = k.crt_join([v % m1 for v in x], [v % m2 for v in x], m1, m2, gmpy2.invert(m2, m1))
    assert got == x
    with pytest.raises(ValueError, match="length"):
        k.crt_join([mpz(1)], [], m1, m2, mpz(1))
    with pytest.raises(TypeError, match="mpz"):
        k.crt_join([1], [mpz(1)], m1, m2, mpz(1))


@needs_kernel
@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(65, 700) | st.sampled_from([3071, 3073, 4096]),  # both C paths
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 40),
    n_groups=st.integers(0, 6),
)
def test_group_product_and_mulmod_match_gmpy2(bits, seed, n, n_groups):
    rng = np.random.default_rng(seed)

    def rand(nbits):
        return mpz(int.from_bytes(rng.bytes(nbits // 8 + 1), "little")) >> (8 - nbits % 8)

    m = rand(bits) | (1 << (bits - 1)) | 1
    a = [rand(bits + 3) if i % 5 == 0 else rand(bits) % m for i in range(n)]  # some >= m
    groups = rng.integers(-1, max(n_groups, 1), size=n).astype(np.int64)
    if not n_groups:
        groups[:] = -1
    want = [mpz(1)] * n_groups  # empty groups stay 1
    for v, g in zip(a, groups.tolist(), strict=True):
        if g >= 0:
            want[g] = want[g] * v % m
    assert k.group_product(a, groups, n_groups, m) == want
    b = [rand(bits) for _ in range(n)]
    assert k.mulmod(a, b, m) == [x * y % m for x, y in zip(a, b, strict=True)]
    with pytest.raises(IndexError, match="range"):
        k.group_product([mpz(3)], np.array([n_groups], dtype=np.int64), n_groups, m)
    with pytest.raises(ValueError, match="one group per element"):
        k.group_product([mpz(3)], np.array([0, 0], dtype=np.int64), 1, m)
    with pytest.raises(TypeError, match="mpz"):
        k.mulmod([3], [mpz(3)], m)


@needs_kernel
def test_mont_chain_refuses_bad_input():
    m = mpz(2**127 - 1)
    rows = [k.mont_row(m, mpz(3), 4)]
    with pytest.raises(ValueError, match="odd"):
        k.mont_row(m + 1, mpz(3), 4)
    with pytest.raises(TypeError, match="mpz"):
        k.mont_chain(int(m), rows, np.zeros((1, 1), dtype=np.int64))
    with pytest.raises(IndexError, match="digit"):
        k.mont_chain(m, rows, np.array([[4]], dtype=np.int64))
    with pytest.raises(IndexError, match="digit"):
        k.mont_chain(m, rows, np.array([[-1]], dtype=np.int64))
    with pytest.raises(ValueError, match="int64"):
        k.mont_chain(m, rows, np.zeros((1, 1), dtype=np.int32))
    with pytest.raises(ValueError, match="more digit columns"):
        k.mont_chain(m, rows, np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="modulus"):
        other = k.mont_row(mpz(2**130 + 1), mpz(3), 3)  # 9 limbs: no whole 2-limb entries
        k.mont_chain(m, [other], np.zeros((1, 1), dtype=np.int64))
    with pytest.raises(ValueError, match="length"):
        k.mont_chain(m, rows, np.zeros((2, 1), dtype=np.int64), [mpz(1)])
    with pytest.raises(TypeError, match="mpz"):
        k.mont_chain(m, rows, np.zeros((1, 1), dtype=np.int64), [5])


@pytest.mark.parametrize("native", [True, False])
def test_fixed_base_paths_agree(native, monkeypatch):
    if native and k is None:
        pytest.skip(_native.status())
    monkeypatch.setenv("VEIL_NATIVE", "1" if native else "0")
    _native.reset()
    try:
        m = mpz(2**521 - 1)
        table = FixedBase(7, m, 100, 9)
        exps = [0, 1, 2**100 - 1, 12345678901234567890, 2**61]
        want = [gmpy2.powmod(7, e, m) for e in exps]
        assert table.pow_ints(exps).tolist() == want
        small = np.array([0, 5, 2**40 + 3], dtype=np.int64)
        start = [mpz(3), mpz(m + 5), mpz(1)]  # an unreduced start value too
        got = table.pow_digits(table.small_digits(small), start).tolist()
        assert got == [
            s * gmpy2.powmod(7, int(e), m) % m for s, e in zip(start, small, strict=True)
        ]
        assert table.native() is native
    finally:
        monkeypatch.delenv("VEIL_NATIVE")
        _native.reset()


@pytest.mark.parametrize("scheme", [ou, paillier])
def test_ciphertexts_cross_paths(scheme, monkeypatch):
    """A ciphertext made by one path decrypts, adds and compares under the other."""
    pk, sk = scheme.generate_keypair(1024, policy=TEST_POLICY)
    x = np.array([0.5, -3.25, 1e6, -1e-6, 0.0])
    c_native = pk.encrypt(x)
    monkeypatch.setenv("VEIL_NATIVE", "0")
    _native.reset()
    try:
        c_python = pk.encrypt(x)
        np.testing.assert_allclose(sk.decrypt(c_native + c_python), 2 * x, atol=1e-9)
        np.testing.assert_allclose(sk.decrypt(c_native + x), 2 * x, atol=1e-9)
    finally:
        monkeypatch.delenv("VEIL_NATIVE")
        _native.reset()
    np.testing.assert_allclose(sk.decrypt(c_python - x), 0 * x, atol=1e-9)
