"""Curve25519 hash-as-x primitives: commutativity, determinism, truncation, errors."""

from __future__ import annotations

import hashlib

import pytest

from veil.crypto import ecc
from veil.errors import ConfigError, ProtocolError


def test_hash_to_point_is_sha256_as_u() -> None:
    assert ecc.hash_to_points([b"alice", "\u00e9".encode()]) == [
        hashlib.sha256(b"alice").digest(),
        hashlib.sha256("\u00e9".encode()).digest(),
    ]


def test_exponentiation_commutes_and_distinguishes() -> None:
    a, b = ecc.new_scalar(), ecc.new_scalar()
    assert a != b
    pts = ecc.hash_to_points([f"id{i}".encode() for i in range(50)])
    ab = ecc.scalar_mult(b, ecc.scalar_mult(a, pts))
    ba = ecc.scalar_mult(a, ecc.scalar_mult(b, pts))
    assert ab == ba
    assert len(set(ab)) == 50
    assert not set(ab) & set(pts)


def test_known_answer_rfc7748() -> None:
    # RFC 7748 section 5.2, first X25519 test vector
    k = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    want = bytes.fromhex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
    assert ecc.scalar_mult(k, [u]) == [want]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_multiplier_threads_match_single_thread(threads: int) -> None:
    k = ecc.new_scalar()
    pts = ecc.hash_to_points([str(i).encode() for i in range(257)])
    with ecc.ScalarMultiplier(threads) as mul:
        assert mul(k, pts) == ecc.scalar_mult(k, pts)
        assert mul(k, []) == []


def test_truncation_keeps_chosen_bytes() -> None:
    p = bytes(range(32))
    assert ecc.truncate([p, p], 4) == bytes(range(4)) * 2
    high = ecc.Suite(truncation=ecc.Truncation.HIGH)
    assert ecc.truncate([p], 12, high) == bytes(range(20, 32))
    with pytest.raises(ConfigError, match="truncate_bytes"):
        ecc.truncate([p], 33)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ConfigError, match="scalar"):
        ecc.scalar_mult(b"short", [bytes(32)])
    with pytest.raises(ProtocolError, match="31 bytes"):
        ecc.scalar_mult(ecc.new_scalar(), [bytes(31)])
    with pytest.raises(ProtocolError, match="small order"):
        ecc.scalar_mult(ecc.new_scalar(), [bytes(32)])  # u = 0 has small order
    with pytest.raises(ProtocolError, match="multiple of 32"):
        ecc.split_points(bytes(33))
    with pytest.raises(ConfigError, match="threads"):
        ecc.ScalarMultiplier(0)


def test_suite_names_are_stable() -> None:
    assert ecc.DEFAULT_SUITE.name == "curve25519-sha256-hash_as_x-low"
    assert ecc.DEFAULT_SUITE.point_bytes == 32
