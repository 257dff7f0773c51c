"""Property tests: homomorphic identities, encoding round trips, negatives, overflow, packing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.crypto.conftest import keypair
from veil.crypto.encoding import HEOverflowError, encode_multiplier, scale_to_int

SCHEMES = ["paillier", "ou"]
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ints = st.integers(min_value=-(2**62), max_value=2**62)
floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@pytest.mark.parametrize("name", SCHEMES)
@FAST
@given(a=st.lists(ints, min_size=1, max_size=4), k=st.integers(-(2**40), 2**40))
def test_integer_identities(name, a, k):
    pk, sk = keypair(name)
    x = np.array(a, dtype=object)
    c = pk.encrypt(x)
    assert [int(v) for v in sk.decrypt(c)] == a
    assert [int(v) for v in sk.decrypt(c + c)] == [2 * v for v in a]
    assert [int(v) for v in sk.decrypt(c * k)] == [k * v for v in a]
    assert [int(v) for v in sk.decrypt(-c)] == [-v for v in a]
    assert [int(v) for v in sk.decrypt(c - c)] == [0] * len(a)
    assert int(sk.decrypt(c.sum())[0]) == sum(a)


@pytest.mark.parametrize("name", SCHEMES)
@FAST
@given(a=st.lists(floats, min_size=1, max_size=4), s=floats)
def test_float_identities(name, a, s):
    pk, sk = keypair(name)
    x = np.array(a)
    c = pk.encrypt(x)
    np.testing.assert_allclose(sk.decrypt(c), x, rtol=0, atol=2**-40)
    np.testing.assert_allclose(sk.decrypt(c + s), x + s, rtol=1e-12, atol=2**-39)
    np.testing.assert_allclose(sk.decrypt(c * s), x * s, rtol=1e-12, atol=1e-6)


@settings(deadline=None)
@given(x=st.lists(floats, min_size=1, max_size=8), f=st.integers(0, 60))
def test_fixed_point_round_trip_error_bound(x, f):
    a = np.array(x)
    back = np.array([int(v) for v in scale_to_int(a, f)], dtype=np.float64) / 2.0**f
    assert np.all(np.abs(back - a) <= 2.0 ** (-f - 1) + np.abs(a) * 2**-52)


@settings(deadline=None)
@given(x=st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=8))
def test_multiplier_encoding_is_exact_or_53_bits(x):
    a = np.array(x)
    k, f = encode_multiplier(a)
    assert 0 <= f <= 256
    back = np.ldexp(np.array([float(int(v)) for v in k]), -f)
    scale = np.max(np.abs(a)) if a.size else 0.0
    assert np.all(np.abs(back - a) <= scale * 2.0**-52 + 2.0**-257)


@pytest.mark.parametrize("name", SCHEMES)
@FAST
@given(shift=st.integers(0, 8))
def test_overflow_raises_instead_of_wrapping(name, shift):
    pk, _ = keypair(name)
    near = pk.plain_bound >> shift
    with pytest.raises(HEOverflowError):
        pk.encrypt(np.array([near + 1], dtype=object)) * (1 << (shift + 1))


@pytest.mark.parametrize("name", SCHEMES)
@FAST
@given(data=st.data())
def test_packing_round_trip_at_capacity(name, data):
    pk, sk = keypair(name)
    max_abs = data.draw(st.sampled_from([1.0, 100.0, 1e6]))
    terms = data.draw(st.integers(1, 50))
    fb = data.draw(st.integers(0, 24))
    cap = pk.pack_capacity(max_abs, terms, fb)
    spec = pk.pack_spec(cap, max_abs, terms, fb)
    rows = data.draw(st.integers(1, min(3, terms)))
    vals = np.array(
        data.draw(
            st.lists(
                st.lists(st.floats(-max_abs, max_abs), min_size=cap, max_size=cap),
                min_size=rows,
                max_size=rows,
            )
        )
    )
    if fb == 0:
        vals = np.trunc(vals)
    c = pk.encrypt_packed(vals, spec)
    exact = np.array([[int(v) for v in r] for r in scale_to_int(vals, fb)], dtype=np.float64)
    np.testing.assert_allclose(sk.decrypt_packed(c), exact / 2.0**fb, rtol=0, atol=0)
    # summing up to max_terms rows (with repetition) stays exact
    reps = min(terms, 3)
    total = c.sum()
    for _ in range(reps - 1):
        total = total + c.sum() if total.terms.max() + rows <= terms else total
    want = exact.sum(axis=0) * (int(total.terms[0, 0]) // rows) / 2.0**fb
    np.testing.assert_allclose(sk.decrypt_packed(total)[0], want, rtol=1e-12)
