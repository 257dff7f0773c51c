"""GF(2^128) arithmetic against a slow pure-Python reference; C paths against the fallback."""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from veil.errors import ConfigError
from veil.protocols.psi import gf128

MOD = (1 << 128) | 0x87


def ref_mul(a: int, b: int) -> int:
    """Carry-less product, then reduction modulo x^128 + x^7 + x^2 + x + 1."""
    p = 0
    for i in range(128):
        if b >> i & 1:
            p ^= a << i
    for i in range(254, 127, -1):
        if p >> i & 1:
            p ^= MOD << (i - 128)
    return p


def ints(v: np.ndarray) -> list[int]:
    return [int(lo) | int(hi) << 64 for lo, hi in v]


EDGE = [0, 1, 2, 0x87, 1 << 63, 1 << 64, 1 << 127, (1 << 128) - 1, (1 << 127) | 1]


def vec(values: list[int]) -> np.ndarray:
    return np.array([[v & (1 << 64) - 1, v >> 64] for v in values], dtype=np.uint64).reshape(-1, 2)


def test_reference_basics() -> None:
    assert ref_mul(1 << 127, 2) == 0x87  # x^128 = x^7 + x^2 + x + 1
    assert ref_mul(1 << 64, 1 << 64) == 0x87
    assert ref_mul(3, 3) == 5  # (x + 1)^2 = x^2 + 1


def test_mul_matches_reference() -> None:
    a = EDGE + [secrets.randbits(128) for _ in range(40)]
    b = EDGE[::-1] + [secrets.randbits(128) for _ in range(40)]
    a += a[:9]
    b += EDGE
    want = [ref_mul(x, y) for x, y in zip(a, b, strict=True)]
    assert ints(gf128.mul(vec(a), vec(b))) == want
    assert ints(gf128._mul_np(vec(a), vec(b))) == want


@pytest.mark.parametrize("c", [*EDGE, 0x5A17_3C0F_FFEE_0001_8000_0000_0000_0123])
def test_mul_const_matches_reference(c: int) -> None:
    a = EDGE + [secrets.randbits(128) for _ in range(70)]
    want = [ref_mul(x, c) for x in a]
    cv = gf128.from_int(c)
    assert ints(gf128.mul_const(vec(a), cv)) == want
    assert ints(gf128._mul_const_np(vec(a), cv)) == want


def test_field_laws() -> None:
    a, b, c = gf128.random(500), gf128.random(500), gf128.random(500)
    assert np.array_equal(gf128.mul(a, b), gf128.mul(b, a))
    assert np.array_equal(gf128.mul(a, b ^ c), gf128.mul(a, b) ^ gf128.mul(a, c))
    assert np.array_equal(gf128.mul(gf128.mul(a, b), c), gf128.mul(a, gf128.mul(b, c)))
    one = gf128.from_int(1)
    assert np.array_equal(gf128.mul_const(a, one), a)
    assert not gf128.mul_const(a, gf128.from_int(0)).any()


def test_native_paths_agree_with_fallback() -> None:
    mod = gf128.native()
    if mod is None:
        pytest.skip(f"no C helper here: {gf128.native_status()}")
    a, b = gf128.random(3000), gf128.random(3000)
    want = gf128._mul_np(a, b)
    for portable in (False, True):
        out = np.empty_like(a)
        mod.mul(a, b, out, portable)
        assert np.array_equal(out, want)
        out = np.empty_like(a)
        mod.mul_const(a, b[5], out, portable)
        assert np.array_equal(out, gf128._mul_const_np(a, b[5]))
    assert "checked against the fallback" in gf128.native_status()


def test_bytes_and_ints_round_trip() -> None:
    a = gf128.random(33)
    raw = gf128.to_bytes(a)
    assert len(raw) == 33 * 16
    assert np.array_equal(gf128.from_bytes(raw), a)
    assert int.from_bytes(raw[:16], "little") == gf128.to_int(a[0])
    assert gf128.to_int(gf128.from_int((1 << 128) - 2)) == (1 << 128) - 2
    assert gf128.to_bytes(gf128.from_int(1)) == b"\x01" + bytes(15)
    assert gf128.random(0).shape == (0, 2)
    assert gf128.mul_const(gf128.random(0), gf128.from_int(3)).shape == (0, 2)


def test_random_is_random() -> None:
    a = gf128.random(1000)
    assert len({tuple(r) for r in a.tolist()}) == 1000
    assert 0.45 < np.unpackbits(a.view(np.uint8)).mean() < 0.55


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="shape"):
        gf128.mul(np.zeros((3, 2), dtype=np.uint32), np.zeros((3, 2), dtype=np.uint64))
    with pytest.raises(ConfigError, match="differ"):
        gf128.mul(gf128.random(3), gf128.random(4))
    with pytest.raises(ConfigError, match="one element"):
        gf128.mul_const(gf128.random(3), gf128.random(1))
    with pytest.raises(ConfigError, match="multiple of 16"):
        gf128.from_bytes(b"abc")
    with pytest.raises(ConfigError):
        gf128.from_int(1 << 128)
    with pytest.raises(ConfigError):
        gf128.random(-1)


def test_a_wrong_native_helper_is_refused() -> None:
    """The load-time check catches a C helper that disagrees with the fallback."""
    mod = gf128.native()
    if mod is None:
        pytest.skip(f"no C helper here: {gf128.native_status()}")

    class Broken:
        clmul_available = staticmethod(mod.clmul_available)

        @staticmethod
        def mul(a: np.ndarray, b: np.ndarray, out: np.ndarray, portable: bool = False) -> None:
            mod.mul(a, b, out, portable)
            out[-1, 0] ^= np.uint64(1)  # one wrong bit

        mul_const = staticmethod(mod.mul_const)

    with pytest.raises(ArithmeticError, match="mul disagrees"):
        gf128._self_test(Broken)  # type: ignore[arg-type]
