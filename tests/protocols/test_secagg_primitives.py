"""The pure pieces of secure aggregation: Shamir sharing, the ring, masks, share boxes."""

from __future__ import annotations

import itertools
import secrets

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.errors import ConfigError, ProtocolError
from veil.protocols.secagg import masks, shamir


def test_field_is_prime_and_holds_a_key() -> None:
    assert gmpy2.is_prime(shamir.PRIME, 50)
    assert shamir.PRIME > 1 << shamir.MAX_SECRET_BITS


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 7), st.data())
def test_any_threshold_subset_recovers_the_secret(n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, n))
    secret = secrets.randbits(256)
    holders = data.draw(st.lists(st.integers(1, 1 << 16), min_size=n, max_size=n, unique=True))
    shares = shamir.split(secret, holders, t)
    for subset in itertools.islice(itertools.combinations(shares, t), 10):
        assert shamir.combine(list(subset), t) == secret


def test_fewer_shares_than_the_threshold_say_nothing() -> None:
    secret = secrets.randbits(256)
    shares = shamir.split(secret, [1, 2, 3, 4, 5], 3)
    # Two shares interpolate a line: its value at 0 is not the secret.
    assert shamir.combine(shares[:2], 2) != secret
    with pytest.raises(ValueError, match="need 3 shares"):
        shamir.combine(shares[:2], 3)
    # Sharing draws fresh coefficients: one share alone varies from run to run.
    assert len({shamir.split(secret, [1, 2], 2)[0][1] for _ in range(5)}) == 5


def test_shamir_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="distinct"):
        shamir.split(1, [1, 1, 2], 2)
    with pytest.raises(ValueError, match="threshold"):
        shamir.split(1, [1, 2], 3)
    with pytest.raises(ValueError, match="secret"):
        shamir.split(1 << 512, [1, 2], 2)
    with pytest.raises(ValueError, match="distinct"):
        shamir.combine([(1, 5), (1, 5)], 2)
    with pytest.raises(ValueError, match="66 bytes"):
        shamir.from_bytes(b"\x01" * 65)
    with pytest.raises(ValueError, match="below the field prime"):
        shamir.from_bytes(b"\xff" * 66)
    assert shamir.from_bytes(shamir.to_bytes(12345)) == 12345


def test_quantisation_error_is_within_the_stated_precision() -> None:
    rng = np.random.default_rng(0)
    for fb in (8, 24, 32):
        xs = [rng.normal(scale=50, size=1000) for _ in range(5)]
        total = sum(masks.quantize(x, fb, 5) for x in xs)
        got = masks.dequantize(np.asarray(total, dtype=np.uint64), fb)
        assert np.abs(got - sum(xs)).max() <= 5 * 2.0 ** -(fb + 1)


def test_quantisation_refuses_values_that_could_wrap() -> None:
    lim = masks.bound(24, 10)
    assert lim == 2.0**39 / 10
    masks.quantize([lim * 0.99, -lim * 0.99], 24, 10)
    with pytest.raises(ConfigError, match="position 1 is beyond the ring"):
        masks.quantize([0.0, lim], 24, 10)
    with pytest.raises(ConfigError, match="NaN"):
        masks.quantize([0.0, np.nan], 24, 10)


def test_mask_expansion_is_deterministic_and_seed_dependent() -> None:
    a, b = secrets.token_bytes(32), secrets.token_bytes(32)
    assert np.array_equal(masks.expand(a, 100), masks.expand(a, 100))
    assert np.array_equal(masks.expand(a, 1000)[:100], masks.expand(a, 100))
    assert not np.array_equal(masks.expand(a, 100), masks.expand(b, 100))
    assert masks.expand(a, 7).dtype == np.uint64


def test_pair_seeds_agree_and_share_boxes_authenticate() -> None:
    u, v, w = masks.KeyPair(), masks.KeyPair(), masks.KeyPair()
    assert masks.pair_seed(u.secret, u.public, v.public) == masks.pair_seed(
        v.secret, v.public, u.public
    )
    assert masks.pair_seed(u.secret, u.public, v.public) != masks.pair_seed(
        u.secret, u.public, w.public
    )
    ct = bytes(masks.share_box(u.secret, v.public).encrypt(b"share"))
    assert masks.open_box(masks.share_box(v.secret, u.public), ct, "t", "f") == b"share"
    tampered = ct[:-1] + bytes([ct[-1] ^ 1])
    with pytest.raises(ProtocolError, match=r"t\.f: share does not decrypt"):
        masks.open_box(masks.share_box(v.secret, u.public), tampered, "t", "f")
    with pytest.raises(ProtocolError, match=r"t\.f: share does not decrypt"):
        masks.open_box(masks.share_box(w.secret, u.public), ct, "t", "f")
    assert masks.KeyPair(u.secret).public == u.public
