"""Shamir secret sharing over the prime field GF(2^521 - 1) [Shamir 1979].

A secret ``s`` (an integer below ``2^512``: a 32-byte key or seed fits) becomes the
constant term of a random polynomial ``f`` of degree ``t - 1`` whose other coefficients
are drawn with :mod:`secrets`; the share of holder ``x`` (an integer 1..2^16) is
``(x, f(x))``. Any ``t`` shares give ``f(0) = s`` by Lagrange interpolation; fewer than
``t`` are independent of ``s`` (perfect secrecy). 2^521 - 1 is a Mersenne prime, so
every non-zero element has an inverse and each share is 66 bytes.

Pure functions, no I/O, used by :mod:`veil.protocols.secagg` for the seeds and keys
that let the aggregator remove the masks of banks that drop out.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence

PRIME = (1 << 521) - 1
SHARE_BYTES = 66  # ceil(521 / 8)
MAX_SECRET_BITS = 512
MAX_HOLDER = 1 << 16

Share = tuple[int, int]
"""``(x, f(x))``: the holder's index and the polynomial's value there."""


def split(secret: int, holders: Sequence[int], threshold: int) -> list[Share]:
    """Shares of ``secret`` for the holders ``holders`` (distinct indices 1..2^16), any
    ``threshold`` of which recover it."""
    if not 0 <= secret < (1 << MAX_SECRET_BITS):
        raise ValueError(f"secret must be an integer in [0, 2^{MAX_SECRET_BITS})")
    xs = list(holders)
    if len(set(xs)) != len(xs) or any(not 0 < x <= MAX_HOLDER for x in xs):
        raise ValueError("holder indices must be distinct integers in [1, 2^16]")
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold {threshold} must be between 1 and {len(xs)} holders")
    coeffs = [secret] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return [(x, _evaluate(coeffs, x)) for x in xs]


def combine(shares: Iterable[Share], threshold: int) -> int:
    """The secret from at least ``threshold`` shares (the first ``threshold`` are used).

    Raises ValueError if there are too few, or two shares of the same holder."""
    pts = list(shares)[: max(threshold, 0)]
    if threshold < 1 or len(pts) < threshold:
        raise ValueError(f"need {threshold} shares to reconstruct, got {len(pts)}")
    xs = [x % PRIME for x, _ in pts]
    if len(set(xs)) != len(xs) or 0 in xs:
        raise ValueError("shares must come from distinct non-zero holder indices")
    secret = 0
    for i, (xi, yi) in enumerate(pts):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % PRIME
                den = den * (xj - xi) % PRIME
        secret = (secret + yi * num * pow(den, -1, PRIME)) % PRIME
    return secret


def to_bytes(value: int) -> bytes:
    """A field element as :data:`SHARE_BYTES` little-endian bytes."""
    return value.to_bytes(SHARE_BYTES, "little")


def from_bytes(data: bytes) -> int:
    """The field element of :func:`to_bytes`; ValueError if it is not one."""
    if len(data) != SHARE_BYTES:
        raise ValueError(f"a share is {SHARE_BYTES} bytes, got {len(data)}")
    value = int.from_bytes(data, "little")
    if value >= PRIME:
        raise ValueError("share value is not below the field prime")
    return value


def _evaluate(coeffs: Sequence[int], x: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % PRIME
    return acc
