"""Two-party additive secret sharing over Z_2^64, fixed point and probabilistic truncation.

Pure arithmetic: no I/O, no randomness of its own (callers pass random words, see
:mod:`veil.mpc.prg`). A value ``x`` of the ring Z_2^64 is held as two *shares*
``x0 + x1 = x (mod 2^64)``; one share alone is a uniformly random word and says nothing
about ``x``. Numpy ``uint64`` arithmetic wraps modulo 2^64 natively, so addition,
subtraction, products with public integers and (matrix) products are exact ring
operations on whole arrays.

Fixed point (:class:`FixedPoint`): a real ``v`` is the ring element ``round(v * 2^f)``
(two's complement for negatives) with ``f`` fraction bits. Products of two fixed-point
values carry ``2f`` fraction bits and are brought back to ``f`` by truncation.

Truncation (:func:`trunc`) is the local, probabilistic one of SecureML (Mohassel and
Zhang, "SecureML: A System for Scalable Privacy-Preserving Machine Learning", IEEE S&P
2017, Theorem 1): party 0 shifts its share right by ``d`` bits, party 1 negates, shifts
and negates back; no message is exchanged. If the shared value satisfies ``|x| < 2^lx``
(as a ring integer), then with probability at least ``1 - 2^(lx + 1 - 64)`` over the
random share, the truncated shares reconstruct to ``floor(x / 2^d)`` or
``floor(x / 2^d) + 1``: an error of at most one unit in the last place (``2^-f`` in
real terms). Otherwise (probability at most ``2^(lx + 1 - 64)``, see
:func:`trunc_failure_bound`) the result is off by about ``2^(64 - d)``: the value is
lost. Callers keep ``lx`` small (values and products well inside the ring) and state
the bound they rely on.

What a party learns from this module's operations: nothing; they are local.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError

__all__ = [
    "RING_BITS",
    "FixedPoint",
    "Share",
    "beaver_matmul",
    "beaver_mul",
    "from_signed",
    "reconstruct",
    "split",
    "to_signed",
    "trunc",
    "trunc_failure_bound",
]

RING_BITS = 64
Share = npt.NDArray[np.uint64]
"""One party's share: a numpy ``uint64`` array (any shape)."""

_MAX_ABS = 1 << 62  # encoded magnitudes stay below 2^62: headroom for sums and signs


def from_signed(a: npt.ArrayLike) -> Share:
    """Signed integers (int64 range) as ring elements (two's complement)."""
    arr = np.asarray(a)
    if arr.dtype == np.uint64:
        return arr
    return np.asarray(arr, dtype=np.int64).view(np.uint64)


def to_signed(u: Share) -> npt.NDArray[np.int64]:
    """Ring elements as signed integers in [-2^63, 2^63)."""
    return np.asarray(u, dtype=np.uint64).view(np.int64)


def split(x: Share, r: Share) -> tuple[Share, Share]:
    """Shares ``(x - r, r)`` of ``x`` given uniform random words ``r`` of its shape."""
    x = np.asarray(x, dtype=np.uint64)
    r = np.asarray(r, dtype=np.uint64)
    if x.shape != r.shape:
        raise ConfigError("r", f"random words of shape {r.shape} for a value of {x.shape}")
    return x - r, r


def reconstruct(s0: Share, s1: Share) -> Share:
    """The shared value ``s0 + s1 (mod 2^64)``."""
    return np.asarray(s0, dtype=np.uint64) + np.asarray(s1, dtype=np.uint64)


def trunc(share: Share, bits: int, party: int) -> Share:
    """This party's share of the shared value divided by ``2^bits`` (SecureML; see the
    module docstring for the error and failure bound). ``party`` is 0 or 1."""
    if not 0 <= bits < RING_BITS:
        raise ConfigError("bits", f"must be in [0, {RING_BITS}), got {bits}")
    s = np.asarray(share, dtype=np.uint64)
    if bits == 0:
        return s
    shift = np.uint64(bits)
    if party == 0:
        return s >> shift
    if party == 1:
        return np.uint64(0) - ((np.uint64(0) - s) >> shift)
    raise ConfigError("party", f"must be 0 or 1, got {party}")


def trunc_failure_bound(value_bits: float) -> float:
    """Probability that one SecureML truncation of a value ``|x| < 2^value_bits`` (as a
    ring integer, i.e. with its fraction bits) fails (SecureML, Theorem 1)."""
    return float(min(1.0, 2.0 ** (value_bits + 1 - RING_BITS)))


def beaver_mul(party: int, e: Share, f: Share, *, a: Share, b: Share, c: Share) -> Share:
    """Share of ``x * y`` (element-wise) from the opened ``e = x - a``, ``f = y - b`` and
    this party's shares of the triple ``c = a * b`` (Beaver 1991)."""
    z: Share = c + e * b + f * a
    return z + e * f if party == 0 else z


def beaver_matmul(party: int, E: Share, F: Share, *, A: Share, B: Share, C: Share) -> Share:
    """Share of ``X @ Y`` from the opened ``E = X - A``, ``F = Y - B`` and this party's
    shares of the matrix triple ``C = A @ B``."""
    Z: Share = C + E @ B + A @ F
    return Z + E @ F if party == 0 else Z


class FixedPoint:
    """Fixed-point encoding with ``frac_bits`` fraction bits in Z_2^64."""

    __slots__ = ("frac_bits", "scale")

    def __init__(self, frac_bits: int = 16) -> None:
        if isinstance(frac_bits, bool) or not isinstance(frac_bits, int):
            raise ConfigError("frac_bits", f"must be an integer, got {frac_bits!r}", "e.g. 16")
        if not 4 <= frac_bits <= 28:
            raise ConfigError(
                "frac_bits",
                f"{frac_bits} is outside 4..28",
                "use 12-20: products carry twice as many fraction bits in a 64-bit ring",
            )
        self.frac_bits = frac_bits
        self.scale = float(1 << frac_bits)

    def __repr__(self) -> str:
        return f"FixedPoint(frac_bits={self.frac_bits})"

    def max_abs(self) -> float:
        """Largest magnitude :meth:`encode` accepts."""
        return _MAX_ABS / self.scale

    def value_bits(self, max_abs: float, frac_bits: int | None = None) -> float:
        """Bits of ``max_abs`` as a ring integer with ``frac_bits`` (default ``f``)."""
        f = self.frac_bits if frac_bits is None else frac_bits
        return math.log2(max(float(max_abs), 2.0**-f)) + f

    def encode(self, x: npt.ArrayLike, field: str = "x") -> Share:
        """``round(x * 2^f)`` as ring elements; refuses NaN, infinity and overflow."""
        a = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise ConfigError(field, "contains NaN or infinity", "clean or impute the data first")
        scaled = np.rint(a * self.scale)
        if scaled.size and float(np.max(np.abs(scaled))) >= _MAX_ABS:
            top = float(np.max(np.abs(a)))
            raise ConfigError(
                field,
                f"value {top:.6g} does not fit {self.frac_bits} fraction bits of a 64-bit ring",
                "scale the data down or use fewer fraction bits",
            )
        return scaled.astype(np.int64).view(np.uint64)

    def decode(self, u: Share, frac_bits: int | None = None) -> npt.NDArray[np.float64]:
        """Ring elements with ``frac_bits`` (default ``f``) fraction bits as floats."""
        f = self.frac_bits if frac_bits is None else frac_bits
        return to_signed(u).astype(np.float64) / float(1 << f)

    def encode_public(self, c: float, sig_bits: int = 20) -> tuple[int, int]:
        """A public real constant as ``(integer, fraction bits)`` keeping ``sig_bits``
        significant bits: multiplying a share by the integer and truncating by the
        fraction bits multiplies the shared value by ``c`` (relative error ``2^-sig_bits``)."""
        c = float(c)
        if not math.isfinite(c):
            raise ConfigError("constant", f"{c} is not finite")
        if c == 0.0:
            return 0, 0
        _, exp = math.frexp(abs(c))  # |c| = m * 2^exp, 0.5 <= m < 1
        bits = max(0, sig_bits - exp)
        if bits >= RING_BITS - 1:
            raise ConfigError("constant", f"{c} is too small for a 64-bit ring")
        k = round(c * (1 << bits))
        while bits and k % 2 == 0:  # 0.25 is (1, 2 bits): smaller products to truncate
            k //= 2
            bits -= 1
        return k, bits
