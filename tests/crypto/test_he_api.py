"""The public HE API, on both schemes: arithmetic, reductions, packing, wire, errors."""

from __future__ import annotations

import numpy as np
import pytest

from veil.codec import decode, encode
from veil.crypto import ou, paillier
from veil.crypto.encoding import HEOverflowError
from veil.crypto.encrypted import EncryptedArray
from veil.crypto.he import get_scheme, public_key_from_wire
from veil.errors import ConfigError, ProtocolError
from veil.policy import TEST_POLICY

RNG = np.random.default_rng(7)


def test_float_and_int_round_trip(keys):
    pk, sk = keys
    x = RNG.normal(size=7) * 100
    out = sk.decrypt(pk.encrypt(x))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, x, atol=2**-40)
    ints = np.array([0, 1, -1, 2**40, -(2**50)])
    got = sk.decrypt(pk.encrypt(ints))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, ints)


def test_two_d_shapes_and_indexing(keys):
    pk, sk = keys
    x = np.arange(6, dtype=np.int64).reshape(2, 3) - 2
    c = pk.encrypt(x)
    assert c.shape == (2, 3) and len(c) == 2
    np.testing.assert_array_equal(sk.decrypt(c + x), 2 * x)
    v = pk.encrypt(np.array([5, 6, 7, 8]))
    np.testing.assert_array_equal(sk.decrypt(v[1:3]), [6, 7])
    np.testing.assert_array_equal(sk.decrypt(v[np.array([3, 0])]), [8, 5])
    assert int(sk.decrypt(v[2])) == 7


def test_arithmetic_matches_numpy(keys):
    pk, sk = keys
    a, b = RNG.normal(size=5), RNG.normal(size=5)
    ca, cb = pk.encrypt(a), pk.encrypt(b)
    tol = 1e-9
    np.testing.assert_allclose(sk.decrypt(ca + cb), a + b, atol=tol)
    np.testing.assert_allclose(sk.decrypt(ca - cb), a - b, atol=tol)
    np.testing.assert_allclose(sk.decrypt(ca + b), a + b, atol=tol)
    np.testing.assert_allclose(sk.decrypt(b + ca), a + b, atol=tol)
    np.testing.assert_allclose(sk.decrypt(ca - b), a - b, atol=tol)
    np.testing.assert_allclose(sk.decrypt(b - ca), b - a, atol=tol)
    np.testing.assert_allclose(sk.decrypt(-ca), -a, atol=tol)
    np.testing.assert_allclose(sk.decrypt(ca * 0.25), a * 0.25, atol=tol)
    np.testing.assert_allclose(sk.decrypt(0.01 * ca), a * 0.01, atol=tol)
    np.testing.assert_allclose(sk.decrypt(ca * b), a * b, atol=tol)
    np.testing.assert_allclose(sk.decrypt(ca * -3), a * -3, atol=tol)
    np.testing.assert_allclose(sk.decrypt(ca / 4), a / 4, atol=tol)
    np.testing.assert_allclose(sk.decrypt((ca * 0.5) + cb), a * 0.5 + b, atol=tol)


def test_int_plus_float_becomes_float(keys):
    pk, sk = keys
    c = pk.encrypt(np.array([1, 2, 3]))
    out = sk.decrypt(c + np.array([0.5, 0.25, -1.5]))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [1.5, 2.25, 1.5])


def test_sum_group_sum_matmul(keys):
    pk, sk = keys
    x = RNG.normal(size=12)
    c = pk.encrypt(x)
    np.testing.assert_allclose(sk.decrypt(c.sum()), [x.sum()], atol=1e-9)
    groups = np.array([0, 2, 2, -1, 0, 4, 4, 4, 0, -1, 2, 0])
    want = np.array([x[groups == g].sum() for g in range(6)])
    got = sk.decrypt(c.group_sum(groups, 6))
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert got[1] == 0 and got[3] == 0 and got[5] == 0
    X = RNG.normal(size=(12, 3))
    np.testing.assert_allclose(sk.decrypt(c @ X), x @ X, atol=1e-8)
    Xi = RNG.integers(-50, 50, size=(12, 4))
    np.testing.assert_allclose(sk.decrypt(c.matmul(Xi)), x @ Xi, atol=1e-8)
    np.testing.assert_allclose(sk.decrypt(Xi.T @ c), Xi.T @ x, atol=1e-8)


def test_concatenate_aligns_precision(keys):
    pk, sk = keys
    mod = get_scheme(pk.scheme)
    a = pk.encrypt(np.array([1.5, 2.5])) * 0.5
    b = pk.encrypt(np.array([7, 8]))
    got = sk.decrypt(mod.concatenate([a, b]))
    np.testing.assert_allclose(got, [0.75, 1.25, 7, 8])


def test_packing_round_trip_and_sums(keys):
    pk, sk = keys
    spec = pk.pack_spec(slots=2, max_abs=4.0, max_terms=10, frac_bits=20)
    gh = np.column_stack([RNG.uniform(-4, 4, 9), RNG.uniform(0, 4, 9)])
    c = pk.encrypt_packed(gh, spec)
    assert len(c) == 9
    np.testing.assert_allclose(sk.decrypt_packed(c), gh, atol=2**-20)
    groups = np.array([0, 1, 1, 0, -1, 2, 2, 2, 0])
    want = np.array([gh[groups == g].sum(axis=0) for g in range(4)])
    np.testing.assert_allclose(sk.decrypt_packed(c.group_sum(groups, 4)), want, atol=1e-5)
    np.testing.assert_allclose(sk.decrypt_packed(c.sum()), [gh.sum(axis=0)], atol=1e-5)
    G = np.column_stack([groups, groups[::-1]])  # two features' histograms in one call
    both = sk.decrypt_packed(c.group_sum(G, 4))
    want2 = np.array([gh[groups[::-1] == g].sum(axis=0) for g in range(4)])
    np.testing.assert_allclose(both, np.concatenate([want, want2]), atol=1e-5)
    np.testing.assert_allclose(sk.decrypt_packed(c + c), 2 * gh, atol=1e-5)


def test_packing_at_capacity(keys):
    pk, sk = keys
    cap = pk.pack_capacity(max_abs=1.0, max_terms=30, frac_bits=16)
    assert cap >= 10
    spec = pk.pack_spec(slots=cap, max_abs=1.0, max_terms=30, frac_bits=16)
    vals = np.tile(np.array([[1.0, -1.0]]), (30, (cap + 1) // 2))[:, :cap]
    total = pk.encrypt_packed(vals, spec).sum()  # every slot at its extreme, 30 times
    np.testing.assert_allclose(sk.decrypt_packed(total), [vals.sum(axis=0)])
    with pytest.raises(ConfigError, match="capacity"):
        pk.pack_spec(slots=cap + 1, max_abs=1.0, max_terms=30, frac_bits=16)
    with pytest.raises(HEOverflowError, match="max_terms"):
        _ = total + pk.encrypt_packed(vals[:1], spec)
    with pytest.raises(HEOverflowError):
        pk.encrypt_packed(vals[:1] * 2, spec)


def test_overflow_detected_before_wrapping(keys):
    pk, _ = keys
    big = 1 << (pk.plain_bits - 3)
    c = pk.encrypt(np.array([big], dtype=object))
    with pytest.raises(HEOverflowError, match="capacity"):
        _ = c * 16
    with pytest.raises(HEOverflowError):
        pk.encrypt(np.array([1 << (pk.plain_bits + 1)], dtype=object))
    c3 = c * 3  # fits: 3/16 of the plaintext space
    with pytest.raises(OverflowError):  # also a builtin OverflowError; 9/16 does not
        _ = c3 + c3 + c3


def test_wire_round_trip_through_codec(keys):
    pk, sk = keys
    mod = get_scheme(pk.scheme)
    pk2 = public_key_from_wire(decode(encode(pk.to_wire())), policy=TEST_POLICY)
    assert pk2 == pk and isinstance(pk2, mod.PublicKey)
    x = RNG.normal(size=4)
    c = pk2.encrypt(x) * 0.5
    back = EncryptedArray.from_wire(pk, decode(encode(c.to_wire())))
    np.testing.assert_allclose(sk.decrypt(back), x * 0.5, atol=1e-9)
    spec = pk.pack_spec(slots=3, max_abs=2.0, max_terms=5)
    cp = pk.encrypt_packed(np.ones((2, 3)), spec).sum()
    back = EncryptedArray.from_wire(pk, decode(encode(cp.to_wire())))
    np.testing.assert_allclose(sk.decrypt_packed(back), [[2.0, 2.0, 2.0]])
    wire = c.to_wire()
    assert len(wire["ct"].to_bytes()) == 4 * pk.ct_bytes


def test_from_wire_rejects_garbage(keys):
    pk, _ = keys
    c = pk.encrypt(np.array([1, 2]))
    w = c.to_wire()
    with pytest.raises(ProtocolError):
        EncryptedArray.from_wire(pk, {**w, "shape": [3]})
    with pytest.raises(ProtocolError):
        EncryptedArray.from_wire(pk, {k: v for k, v in w.items() if k != "bound"})
    with pytest.raises(ProtocolError):
        public_key_from_wire({"scheme": "rsa"})
    with pytest.raises(ConfigError, match="2048"):
        public_key_from_wire(pk.to_wire())  # 1024-bit key under the default policy


def test_keygen_refuses_small_keys_by_default():
    for mod in (paillier, ou):
        with pytest.raises(ConfigError, match="bits"):
            mod.generate_keypair(1024)


def test_key_material_never_in_repr(keys):
    pk, sk = keys
    text = repr(sk) + str(sk) + repr(pk) + repr(pk.encrypt(np.array([1])))
    secrets = [sk._p, getattr(sk, "_q", None), getattr(sk, "_t", None)]
    for s in secrets:
        if s is not None:
            assert str(int(s)) not in text and hex(int(s))[2:12] not in text
    assert str(int(pk.n)) not in text


def test_bad_inputs_name_the_field(keys):
    pk, _ = keys
    with pytest.raises(ConfigError, match="x"):
        pk.encrypt(np.array([1.0, np.nan]))
    with pytest.raises(ConfigError, match="x"):
        pk.encrypt(np.array(["a"]))
    c = pk.encrypt(np.array([1, 2, 3]))
    with pytest.raises(ConfigError, match="groups"):
        c.group_sum(np.array([0, 5, 1]), 2)
    with pytest.raises(ConfigError, match="X"):
        c.matmul(np.ones((4, 2)))
    with pytest.raises(ConfigError, match="other"):
        _ = c * c
    with pytest.raises(ConfigError, match="he"):
        get_scheme("rsa")


def test_rerandomize_changes_ciphertexts_not_values(keys):
    pk, sk = keys
    c = pk.encrypt(np.array([3, 0])) * 0
    r = c.rerandomize()
    assert all(int(a) != int(b) for a, b in zip(c.ct, r.ct, strict=True))
    np.testing.assert_array_equal(sk.decrypt(r), [0, 0])


def test_precomputed_pool_is_used(keys):
    pk, sk = keys
    pk.precompute_async(3).result(timeout=60)
    pk.precompute(2)
    assert pk.pool_size() >= 5
    before = pk.pool_size()
    c = pk.encrypt(np.array([1, 2, 3]))
    assert pk.pool_size() == before - 3
    np.testing.assert_array_equal(sk.decrypt(c), [1, 2, 3])
    assert len({int(v) for v in c.ct}) == 3


@pytest.mark.parametrize("rows", [1, 7, 40])
def test_compress_round_trip(keys, rows):
    pk, sk = keys
    spec = pk.pack_spec(slots=2, max_abs=1.0, max_terms=1000, frac_bits=16)
    vals = np.column_stack([RNG.uniform(-1, 1, 3 * rows), RNG.uniform(0, 0.25, 3 * rows)])
    hist = pk.encrypt_packed(vals, spec).group_sum(np.arange(3 * rows) % rows, rows)
    small = hist.compress()
    k = (pk.plain_bits // spec.slot_bits) // 2
    assert len(small) == -(-rows // min(k, rows))
    want = np.array([vals[np.arange(3 * rows) % rows == g].sum(axis=0) for g in range(rows)])
    got = sk.decrypt_packed(small, slots=2, rows=rows)
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(sk.decrypt_packed(hist), got, atol=0)


def test_randomiser_exponents_are_twice_the_security_level():
    from veil.crypto._scheme import security_bits

    assert [security_bits(b) for b in (1024, 2048, 3072, 4096, 7680)] == [80, 112, 128, 128, 192]
    pk, sk = paillier.generate_keypair(1024, policy=TEST_POLICY)
    assert pk.rand_bits == 160 and pk.table().exp_bits == 160
    big = paillier.PublicKey((1 << 2047) + 1, 4)  # only the sizes matter here
    assert big.rand_bits == 224
    x = np.arange(-50, 50)
    np.testing.assert_array_equal(sk.decrypt(pk.encrypt(x)), x)


def test_encryption_waits_for_a_running_precompute_instead_of_repeating_it(keys, monkeypatch):
    import time

    from veil.crypto import _scheme

    pk, sk = keys
    while pk.pool_size():
        pk.raw_random_zero(pk.pool_size())
    made: list[int] = []
    real = pk._fresh_randomisers

    def slow(count):
        time.sleep(0.05)
        made.append(count)
        return real(count)

    monkeypatch.setattr(_scheme, "POOL_CHUNK", 4)
    monkeypatch.setattr(pk, "_fresh_randomisers", slow)
    fut = pk.precompute_async(12)
    c = pk.encrypt(np.arange(12))
    fut.result(timeout=60)
    assert sum(made) == 12 and pk.pool_size() == 0
    np.testing.assert_array_equal(sk.decrypt(c), np.arange(12))
