"""Share arithmetic of veil.mpc.ring against float64 numpy (property tests)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from veil.errors import ConfigError
from veil.mpc import ring
from veil.mpc.ring import FixedPoint

F = 16
FP = FixedPoint(F)
ULP = 2.0**-F
reals = st.floats(-1000.0, 1000.0, allow_nan=False, allow_infinity=False)
seeds = st.integers(0, 2**32 - 1)


def shares(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed).integers(0, 2**64, x.shape, dtype=np.uint64)
    return ring.split(x, r)


def triple(shape_a: tuple[int, ...], shape_b: tuple[int, ...], seed: int, mat: bool) -> list[dict]:
    """Two parties' shares of a random (matrix) Beaver triple."""
    g = np.random.default_rng(seed)
    a = g.integers(0, 2**64, shape_a, dtype=np.uint64)
    b = g.integers(0, 2**64, shape_b, dtype=np.uint64)
    c = a @ b if mat else a * b
    out = [{}, {}]
    for name, v in (("a", a), ("b", b), ("c", c)):
        s0, s1 = shares(v, seed + 1 + len(name))
        out[0][name], out[1][name] = s0, s1
    return out


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 40), elements=reals), seeds)
def test_encode_decode_and_split_reconstruct(x: np.ndarray, seed: int) -> None:
    s0, s1 = shares(FP.encode(x), seed)
    back = FP.decode(ring.reconstruct(s0, s1))
    assert np.all(np.abs(back - x) <= ULP / 2)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, 30, elements=reals),
    hnp.arrays(np.float64, 30, elements=reals),
    seeds,
)
def test_add_and_public_scale(x: np.ndarray, y: np.ndarray, seed: int) -> None:
    x0, x1 = shares(FP.encode(x), seed)
    y0, y1 = shares(FP.encode(y), seed + 7)
    assert np.all(np.abs(FP.decode(ring.reconstruct(x0 + y0, x1 + y1)) - (x + y)) <= ULP)
    assert np.all(np.abs(FP.decode(ring.reconstruct(x0 - y0, x1 - y1)) - (x - y)) <= ULP)
    k, bits = FP.encode_public(-0.3127)
    z0 = ring.trunc(x0 * np.uint64(k % 2**64), bits, 0)
    z1 = ring.trunc(x1 * np.uint64(k % 2**64), bits, 1)
    err = np.abs(FP.decode(ring.reconstruct(z0, z1)) - (-0.3127 * x))
    assert np.all(err <= 2 * ULP + np.abs(x) * 2.0**-20)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, 25, elements=reals),
    hnp.arrays(np.float64, 25, elements=reals),
    seeds,
)
def test_beaver_mul_with_truncation_is_within_the_bound(
    x: np.ndarray, y: np.ndarray, seed: int
) -> None:
    xs, ys = shares(FP.encode(x), seed), shares(FP.encode(y), seed + 3)
    t = triple(x.shape, y.shape, seed + 5, mat=False)
    e = ring.reconstruct(*(xs[i] - t[i]["a"] for i in (0, 1)))  # what open() returns
    f = ring.reconstruct(*(ys[i] - t[i]["b"] for i in (0, 1)))
    z = [ring.trunc(ring.beaver_mul(i, e, f, **t[i]), F, i) for i in (0, 1)]
    got = FP.decode(ring.reconstruct(*z))
    # inputs rounded to 2^-(F+1), then the truncation's one unit
    bound = ULP + (np.abs(x) + np.abs(y)) * ULP / 2 + ULP**2
    assert np.all(np.abs(got - x * y) <= bound)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 8),
    st.integers(1, 12),
    st.integers(1, 6),
    seeds,
    st.floats(0.01, 30.0),
)
def test_beaver_matmul_with_truncation_is_within_the_bound(
    m: int, k: int, n: int, seed: int, scale: float
) -> None:
    g = np.random.default_rng(seed)
    X, Y = g.normal(size=(m, k)) * scale, g.normal(size=(k, n)) * scale
    xs, ys = shares(FP.encode(X), seed), shares(FP.encode(Y), seed + 1)
    t = triple((m, k), (k, n), seed + 2, mat=True)
    E = ring.reconstruct(*(xs[i] - t[i]["a"] for i in (0, 1)))
    Fm = ring.reconstruct(*(ys[i] - t[i]["b"] for i in (0, 1)))
    Z = [
        ring.trunc(ring.beaver_matmul(i, E, Fm, A=t[i]["a"], B=t[i]["b"], C=t[i]["c"]), F, i)
        for i in (0, 1)
    ]
    got = FP.decode(ring.reconstruct(*Z))
    bound = ULP + (np.abs(X) @ np.ones((k, n)) + np.ones((m, k)) @ np.abs(Y)) * ULP / 2
    assert np.all(np.abs(got - X @ Y) <= bound + k * ULP**2)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**40), 2**40), seeds, st.integers(1, 30))
def test_truncation_is_off_by_at_most_one_when_the_value_is_small(
    v: int, seed: int, bits: int
) -> None:
    """SecureML Theorem 1: |x| < 2^41 fails with probability <= 2^-22 per value over a
    uniform share (drawn here by numpy, 64 values per example: hypothesis itself favours
    small integers, which is exactly the failure window)."""
    x = np.full(64, v, dtype=np.int64).view(np.uint64)
    s0, s1 = shares(x, seed)
    t = ring.to_signed(ring.reconstruct(ring.trunc(s0, bits, 0), ring.trunc(s1, bits, 1)))
    assert np.all(np.isin(t.astype(object) - (v >> bits), (0, 1)))


def test_truncation_fails_as_documented_when_the_share_wraps() -> None:
    """The failure event of the bound: party 1's share in [0, x] (probability x / 2^64)."""
    v = 1 << 40
    x = np.array([v], dtype=np.uint64)
    r = np.array([5], dtype=np.uint64)
    s0, s1 = ring.split(x, r)
    t = ring.to_signed(ring.reconstruct(ring.trunc(s0, 16, 0), ring.trunc(s1, 16, 1)))[0]
    assert abs(int(t) - (v >> 16)) > 2**40
    assert ring.trunc_failure_bound(40) == 2.0**-23


def test_fixed_point_refuses_overflow_nan_and_bad_fraction_bits() -> None:
    with pytest.raises(ConfigError, match="age"):
        FP.encode(np.array([1.0, 2.0**47]), field="age")
    with pytest.raises(ConfigError, match="NaN"):
        FP.encode(np.array([np.nan]))
    with pytest.raises(ConfigError, match="frac_bits"):
        FixedPoint(40)
    assert FP.decode(FP.encode(np.array([-1.5])))[0] == -1.5
