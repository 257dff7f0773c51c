"""The banded OKVS on its own: decode(encode(x)) == x, uniform output, failure rate below
the stated bound, input checks, and the C helper against the fallback."""

from __future__ import annotations

import math
import os
import secrets

import numpy as np
import pytest

from veil.errors import ConfigError
from veil.protocols.psi import okvs
from veil.protocols.psi.okvs import OkvsFailure, OkvsParams


def _values(n: int) -> np.ndarray:
    return np.frombuffer(os.urandom(16 * n), dtype="<u8").reshape(n, 2).copy()


def _seed() -> bytes:
    return secrets.token_bytes(okvs.SEED_BYTES)


@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run encode/decode on the numpy/Python fallback."""
    monkeypatch.setitem(okvs._STATE, "native", (None, "forced by the test"))


def test_empty_store() -> None:
    seed = _seed()
    p = okvs.encode([], np.zeros((0, 2), np.uint64), seed)
    assert p.shape == (okvs.params_for(0).m, 2)
    assert okvs.decode(p, [], seed, okvs.params_for(0)).shape == (0, 2)


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 100_000])
def test_roundtrip_random_keys(n: int) -> None:
    keys = [secrets.token_bytes(12) for _ in range(n)]
    vals, seed = _values(n), _seed()
    params = okvs.params_for(n)
    p = okvs.encode(keys, vals, seed, params)
    assert p.shape == (params.m, 2) and p.dtype == np.uint64
    assert np.array_equal(okvs.decode(p, keys, seed, params), vals)
    others = okvs.decode(p, [b"not-" + k for k in keys[:50]], seed, params)
    assert not (others == vals[:50]).all(axis=1).any()


def test_roundtrip_unicode_keys_digests_and_byte_values() -> None:
    keys = [f"客户-{i}-é😀" for i in range(5000)] + ["", " ", "\x00"]
    vals = np.frombuffer(os.urandom(16 * len(keys)), dtype=np.uint8).reshape(-1, 16)
    seed = _seed()
    p = okvs.encode(keys, vals, seed)
    params = okvs.params_for(len(keys))
    out = okvs.decode(p, okvs.key_digests(keys), seed, params)
    assert out.view(np.uint8).tobytes() == vals.tobytes()
    # another seed is another store: the keys' rows change
    assert not np.array_equal(okvs.decode(p, keys, _seed(), params), out)


def test_fallback_roundtrip(fallback: None) -> None:
    keys = [f"id{i}" for i in range(3000)]
    vals, seed = _values(3000), _seed()
    params = okvs.params_for(3000, w=192)
    p = okvs.encode(keys, vals, seed, params)
    assert np.array_equal(okvs.decode(p, keys, seed, params), vals)


def test_native_matches_fallback_including_failures() -> None:
    mod = okvs._native()
    if mod is None:
        pytest.skip(f"C helper: {okvs.native_status()}")
    failures = 0
    for trial in range(60):
        n, w = 200, 64 * (1 + trial % 3)
        params = OkvsParams(n=n, m=max(n + n // 50, w), w=w)  # tight: some fail
        starts, bands = okvs.rows([secrets.token_bytes(8) for _ in range(n)], _seed(), params)
        vals, x0 = _values(n), _values(params.m)
        xc, xp = x0.copy(), x0.copy()
        rc = mod.solve(starts, bands, vals, params.m, params.words, xc)
        assert (rc == 0) == okvs._solve_py(starts, bands, vals, params.m, xp)
        failures += rc != 0
        if rc == 0:
            assert np.array_equal(xc, xp)
            out = np.empty((n, 2), dtype=np.uint64)
            mod.decode(xc, starts, bands, params.words, out)
            assert np.array_equal(out, vals)
            assert np.array_equal(okvs._decode_np(xc, starts, bands), vals)
    assert 0 < failures < 60


def test_decode_is_linear_in_the_store() -> None:
    """RR22 decodes a VOLE-masked store: decode(P ^ Q) == decode(P) ^ decode(Q)."""
    n, seed = 2000, _seed()
    params = okvs.params_for(n)
    keys = [f"u{i}" for i in range(n)] + ["not encoded"]
    p = okvs.encode(keys[:n], _values(n), seed, params)
    q = _values(params.m)
    both = okvs.decode(p ^ q, keys, seed, params)
    assert np.array_equal(
        both, okvs.decode(p, keys, seed, params) ^ okvs.decode(q, keys, seed, params)
    )


def test_duplicate_keys_rejected() -> None:
    keys = ["a", "b", "c", "b"]
    with pytest.raises(ConfigError, match="duplicate key at positions 1 and 3") as err:
        okvs.encode(keys, _values(4), _seed())
    assert err.value.field == "keys"
    with pytest.raises(ConfigError, match="duplicate"):
        okvs.encode(["x", b"x"], _values(2), _seed())  # str is its UTF-8 bytes


def test_encoding_of_random_values_is_uniform() -> None:
    n = 20_000
    params = okvs.params_for(n)
    p = okvs.encode([f"k{i}" for i in range(n)], _values(n), _seed(), params)
    bits = np.unpackbits(p.view(np.uint8), axis=1)  # (m, 128)
    ones = bits.sum(axis=0)
    z = (ones - params.m / 2) / math.sqrt(params.m / 4)
    assert np.abs(z).max() < 5.5  # each of 128 bit positions balanced
    # neighbouring entries uncorrelated (equal bits half the time)
    eq = (bits[1:] == bits[:-1]).sum(axis=0)
    z_eq = (eq - (params.m - 1) / 2) / math.sqrt((params.m - 1) / 4)
    assert np.abs(z_eq).max() < 5.5
    # every entry distinct (a free column left zero would repeat)
    assert len(np.unique(p.view("V16"))) == params.m


def test_failure_rate_below_bound_at_narrow_band() -> None:
    """2000 encodings of 100 keys with w = 64 and m = 110: the bound is 2^-3.7 there."""
    params = OkvsParams(n=100, m=110, w=64)
    bound = 2.0 ** -okvs.failure_bits(100, 110, 64)
    assert 0.01 < bound < 0.2
    trials, failures = 2000, 0
    vals = _values(100)
    for _ in range(trials):
        keys = okvs.key_digests([secrets.token_bytes(8) for _ in range(100)])
        try:
            okvs.encode(keys, vals, _seed(), params)
        except OkvsFailure:
            failures += 1
    assert failures / trials <= bound
    # the failure is detected: at m = 103 the bound says nothing and encodings do fail
    tight = OkvsParams(n=100, m=103, w=64)
    assert okvs.failure_bits(100, 103, 64) == 0.0
    seen = 0
    for _ in range(200):
        try:
            okvs.encode([secrets.token_bytes(8) for _ in range(100)], vals, _seed(), tight)
        except OkvsFailure:
            seen += 1
    assert seen > 0


def test_failure_rate_below_bound_near_dense() -> None:
    """120 keys in m = w = 128 columns: one dense block, bound 2^-7 (m - n - 1 bits)."""
    params = OkvsParams(n=120, m=128, w=128)
    assert okvs.failure_bits(120, 128, 128) == 7.0
    failures, trials, vals = 0, 1500, _values(120)
    for _ in range(trials):
        try:
            keys = okvs.key_digests([os.urandom(8) for _ in range(120)])
            okvs.encode(keys, vals, _seed(), params)
        except OkvsFailure:
            failures += 1
    assert failures / trials <= 2.0**-7 * 1.6  # 1.6: the binomial noise at 1500 trials


def test_no_failure_at_shipped_parameters() -> None:
    params = okvs.params_for(500)
    assert okvs.failure_bits(500, params.m, params.w) >= 40
    vals = _values(500)
    for _ in range(300):
        keys = okvs.key_digests([secrets.token_bytes(8) for _ in range(500)])
        seed = _seed()
        assert np.array_equal(okvs.decode(okvs.encode(keys, vals, seed), keys, seed, params), vals)


@pytest.mark.parametrize("n", [10, 1000, 10**5, 10**6, 10**7])
def test_params_reach_40_bits(n: int) -> None:
    params = okvs.params_for(n)
    assert params.n == n and params.w == 128 and params.m >= params.w
    assert okvs.failure_bits(n, params.m, params.w) >= 40
    assert params.m <= 1.5 * n or n < 200
    smaller = params.m - (n + 255) // 256
    assert smaller < params.w or okvs.failure_bits(n, smaller, params.w) < 40
    assert okvs.params_for(n, stat_bits=60).m > params.m or params.m == params.w


def test_bad_input_names_the_field() -> None:
    keys, seed = ["a", "b", "c"], _seed()
    params = okvs.params_for(3)
    cases = [
        ("values", lambda: okvs.encode(keys, np.zeros((3, 2), np.float64), seed)),
        ("values", lambda: okvs.encode(keys, np.zeros((3, 3), np.uint64), seed)),
        ("values", lambda: okvs.encode(keys, np.zeros((2, 16), np.uint8), seed)),
        ("values", lambda: okvs.encode(keys, [[0, 0]] * 3, seed)),  # type: ignore[arg-type]
        ("seed", lambda: okvs.encode(keys, _values(3), b"short")),
        ("keys[1]", lambda: okvs.encode(["a", 7, "c"], _values(3), seed)),  # type: ignore[list-item]
        ("keys", lambda: okvs.encode(np.zeros((3, 8), np.uint8), _values(3), seed)),
        ("params", lambda: okvs.encode(keys, _values(3), seed, okvs.params_for(4))),
        ("params", lambda: okvs.encode(keys, _values(3), seed, OkvsParams(3, 100, 96))),
        ("params", lambda: okvs.encode(keys, _values(3), seed, OkvsParams(3, 60, 64))),
        ("okvs", lambda: okvs.decode(np.zeros((5, 2), np.uint64), keys, seed, params)),
        ("n", lambda: okvs.params_for(-1)),
        ("stat_bits", lambda: okvs.params_for(10, stat_bits=0)),
        ("w", lambda: okvs.params_for(10, w=100)),
    ]
    for field, call in cases:
        with pytest.raises(ConfigError) as err:
            call()
        assert err.value.field == field, (field, err.value)
