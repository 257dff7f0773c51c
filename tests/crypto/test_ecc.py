"""EC suites for PSI: ristretto255 (default) and curve25519 hash-as-x (interconnection):
known answers, commutativity, determinism, truncation, threads, errors."""

from __future__ import annotations

import hashlib

import pytest

from veil.crypto import ecc, ristretto
from veil.errors import ConfigError, ProtocolError
from veil.policy import DEFAULT_POLICY

X = ecc.HASH_AS_X
R = ecc.RISTRETTO255
SUITES = [R, X]


def test_hash_as_x_is_sha256_as_u() -> None:
    assert ecc.hash_to_points([b"alice", "\u00e9".encode()], X) == [
        hashlib.sha256(b"alice").digest(),
        hashlib.sha256("\u00e9".encode()).digest(),
    ]


def test_ristretto_hash_is_sha512_then_from_hash() -> None:
    ids = [b"alice", "\u00e9".encode()]
    want = [ristretto.from_hash(hashlib.sha512(ecc.RISTRETTO_DST + i).digest()) for i in ids]
    assert ecc.hash_to_points(ids, R) == want
    assert ecc.DEFAULT_SUITE == R


def test_ristretto_known_answers_rfc9496() -> None:
    # RFC 9496 A.1 (multiples of the generator) and A.3 (hash to group, first vector)
    assert ristretto.base_mult((1).to_bytes(32, "little")).hex() == (
        "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76"
    )
    assert ristretto.base_mult((2).to_bytes(32, "little")).hex() == (
        "6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919"
    )
    h = hashlib.sha512(b"Ristretto is traditionally a short shot of espresso coffee").digest()
    assert ristretto.from_hash(h).hex() == (
        "3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0a46"
    )


def test_ristretto_scalar_arithmetic() -> None:
    a, b = ristretto.random_scalar(), ristretto.random_scalar()
    p = ecc.hash_to_points([b"x"], R)[0]
    ab = ristretto.scalar_mul(a, b)
    assert ristretto.scalar_mult(ab, p) == ristretto.scalar_mult(b, ristretto.scalar_mult(a, p))
    back = ristretto.scalar_mult(ristretto.scalar_invert(a), ristretto.scalar_mult(a, p))
    assert back == p
    q = ecc.hash_to_points([b"y"], R)[0]
    assert ristretto.sub(ristretto.add(p, q), q) == p
    ks = ristretto.random_scalars(2)
    assert ristretto.scalars_mult(ks, p + q) == (
        ristretto.scalar_mult(ks[:32], p) + ristretto.scalar_mult(ks[32:], q)
    )


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_exponentiation_commutes_and_distinguishes(suite: ecc.Suite) -> None:
    a, b = ecc.new_scalar(suite), ecc.new_scalar(suite)
    assert a != b
    pts = ecc.hash_to_points([f"id{i}".encode() for i in range(50)], suite)
    ab = ecc.scalar_mult(b, ecc.scalar_mult(a, pts, suite), suite)
    ba = ecc.scalar_mult(a, ecc.scalar_mult(b, pts, suite), suite)
    assert ab == ba
    assert len(set(ab)) == 50
    assert not set(ab) & set(pts)


def test_known_answer_rfc7748() -> None:
    # RFC 7748 section 5.2, first X25519 test vector
    k = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    want = bytes.fromhex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
    assert ecc.scalar_mult(k, [u], X) == [want]


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_multiplier_threads_match_single_thread(threads: int, suite: ecc.Suite) -> None:
    k = ecc.new_scalar(suite)
    pts = ecc.hash_to_points([str(i).encode() for i in range(257)], suite)
    with ecc.ScalarMultiplier(threads, suite) as mul:
        assert mul(k, pts) == ecc.scalar_mult(k, pts, suite)
        assert mul(k, []) == []
        assert mul.map(lambda lo, hi: (lo, hi), 257) in (
            [(0, 257)],
            [(0, 129), (129, 257)],
            [(0, 86), (86, 172), (172, 257)],
        )


def test_truncation_keeps_chosen_bytes() -> None:
    p = bytes(range(32))
    assert ecc.truncate([p, p], 4, X) == bytes(range(4)) * 2
    high = ecc.Suite(ecc.Group.CURVE25519_HASH_AS_X, ecc.Truncation.HIGH)
    assert ecc.truncate([p], 12, high) == bytes(range(20, 32))
    assert ecc.truncate([p], 4, R) == bytes(range(1, 5))  # byte 0 of ristretto is even
    with pytest.raises(ConfigError, match="truncate_bytes"):
        ecc.truncate([p], 33, X)
    with pytest.raises(ConfigError, match="truncate_bytes"):
        ecc.truncate([p], 32, R)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ConfigError, match="scalar"):
        ecc.scalar_mult(b"short", [bytes(32)])
    with pytest.raises(ProtocolError, match="31 bytes"):
        ecc.scalar_mult(ecc.new_scalar(), [bytes(31)])
    with pytest.raises(ProtocolError, match="small order"):
        ecc.scalar_mult(ecc.new_scalar(X), [bytes(32)], X)  # u = 0 has small order
    with pytest.raises(ProtocolError, match="not a valid ristretto255"):
        ecc.scalar_mult(ecc.new_scalar(), [bytes(32)])  # the identity
    with pytest.raises(ProtocolError, match="not a valid ristretto255"):
        ecc.scalar_mult(ecc.new_scalar(), [b"\xff" * 32])  # not canonical
    with pytest.raises(ProtocolError, match="multiple of 32"):
        ecc.split_points(bytes(33))
    with pytest.raises(ConfigError, match="threads"):
        ecc.ScalarMultiplier(0)


def test_suite_names_are_the_policy_names() -> None:
    assert R.name == "ristretto255" and X.name == "curve25519-hash-as-x"
    assert {R.name, X.name} == DEFAULT_POLICY.psi_suites
    assert R.wire_name == "ristretto255/low"
    assert R.point_bytes == 32 and R.uniform_bytes == 31 and X.uniform_bytes == 32


def _on_twist(u_bytes: bytes) -> bool:
    """Whether u is the coordinate of a point of the twist of Curve25519, not the curve."""
    p = 2**255 - 19
    u = int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)
    f = (u * u * u + 486662 * u * u + u) % p
    return f != 0 and pow(f, (p - 1) // 2, p) != 1


def test_hash_as_x_leaks_the_twist_bit_that_ristretto_does_not_have() -> None:
    """Why ristretto255 is the default: with hash-as-x, [k]H(x) is on the twist exactly
    when H(x) is, so whoever receives [k]H(x) learns that bit of the id."""
    ids = [f"id{i}".encode() for i in range(64)]
    pts = ecc.hash_to_points(ids, X)
    blinded = ecc.scalar_mult(ecc.new_scalar(X), pts, X)
    bits = [_on_twist(p) for p in pts]
    assert [_on_twist(b) for b in blinded] == bits
    assert 10 < sum(bits) < 54  # about half of the ids hash to the twist
    # ristretto255 encodings are all elements of one prime-order group: every received
    # value decodes, and nothing but the element itself can be read off it
    r = ecc.hash_to_points(ids, R)
    assert ristretto.scalar_mult(ristretto.random_scalar(), b"".join(r))


def test_missing_system_libsodium_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ristretto, "_NAMES", ("no-such-sodium-library.so.0",))
    ristretto._lib.cache_clear()
    try:
        assert not ristretto.available()
        with pytest.raises(ConfigError, match="libsodium23"):
            ecc.new_scalar()
    finally:
        monkeypatch.undo()
        ristretto._lib.cache_clear()
    assert ristretto.available()
