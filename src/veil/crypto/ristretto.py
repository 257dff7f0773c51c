"""ristretto255 [RFC 9496] from libsodium: hash to the group, scalar multiplication,
point addition, scalars mod the group order L.

PyNaCl (1.6) binds none of libsodium's ``crypto_core_ristretto255_*`` functions, and
the libsodium it bundles keeps them hidden, so this module calls the system libsodium
(>= 1.0.18, where ristretto255 arrived; Debian/Ubuntu: ``libsodium23``) through ctypes.
ctypes releases the GIL for each call, so batches split over threads use every core.
The library is loaded on first use, not at import.

Encodings are libsodium's: points are 32-byte canonical ristretto255 encodings (every
encoding names a point of the prime-order group: there is no cofactor and no twist),
scalars are 32-byte little-endian integers below L. Batches are concatenations of
fixed-width values (``bytes``), so one call covers a whole batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

from veil.errors import ConfigError, ProtocolError

__all__ = [
    "HASH_BYTES",
    "POINT_BYTES",
    "SCALAR_BYTES",
    "add",
    "available",
    "base_mult",
    "from_hash",
    "random_scalar",
    "random_scalars",
    "scalar_invert",
    "scalar_mul",
    "scalar_mult",
    "scalars_mult",
    "sub",
]

POINT_BYTES = 32
SCALAR_BYTES = 32
HASH_BYTES = 64
_NAMES = ("sodium", "libsodium.so.23", "libsodium.so.26", "libsodium.so")
_NEEDS = (
    "crypto_core_ristretto255_from_hash",
    "crypto_scalarmult_ristretto255",
    "crypto_scalarmult_ristretto255_base",
    "crypto_core_ristretto255_scalar_random",
    "crypto_core_ristretto255_scalar_mul",
    "crypto_core_ristretto255_scalar_invert",
    "crypto_core_ristretto255_add",
    "crypto_core_ristretto255_sub",
)


@functools.cache
def _lib() -> Any:
    for name in _NAMES:
        path = ctypes.util.find_library(name) if "." not in name else name
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if all(hasattr(lib, f) for f in _NEEDS) and lib.sodium_init() >= 0:
            return lib
    raise ConfigError(
        "suite",
        "ristretto255 needs the system libsodium >= 1.0.18, which was not found",
        "install it (Debian/Ubuntu: apt-get install libsodium23), "
        "or use the suite curve25519-hash-as-x",
    )


def available() -> bool:
    """Whether the system libsodium with ristretto255 can be loaded."""
    try:
        _lib()
    except ConfigError:
        return False
    return True


def _buf(data: bytes) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(data, len(data))


def _check(data: bytes, width: int, what: str) -> int:
    if not isinstance(data, bytes) or len(data) % width:
        raise ProtocolError(f"{what} of {len(data)} bytes is not a multiple of {width}")
    return len(data) // width


def from_hash(digests: bytes) -> bytes:
    """The group element of each 64-byte hash output (two Elligator maps, added: a
    uniform point, RFC 9496 Sec. 4.3.4), concatenated."""
    n = _check(digests, HASH_BYTES, "hash batch")
    f = _lib().crypto_core_ristretto255_from_hash
    src, out = _buf(digests), ctypes.create_string_buffer(n * POINT_BYTES)
    byref = ctypes.byref
    for i in range(n):
        f(byref(out, POINT_BYTES * i), byref(src, HASH_BYTES * i))
    return out.raw


def scalar_mult(scalar: bytes, points: bytes) -> bytes:
    """``[scalar]P`` for each point of the concatenation ``points``; a point that is not a
    canonical encoding, or a product that is the identity, is a :class:`ProtocolError`."""
    _check_scalar(scalar)
    n = _check(points, POINT_BYTES, "point batch")
    f = _lib().crypto_scalarmult_ristretto255
    src, out, k = _buf(points), ctypes.create_string_buffer(n * POINT_BYTES), _buf(scalar)
    byref = ctypes.byref
    for i in range(n):
        if f(byref(out, POINT_BYTES * i), k, byref(src, POINT_BYTES * i)):
            raise ProtocolError(f"point {i} of a batch is not a valid ristretto255 element")
    return out.raw


def scalars_mult(scalars: bytes, points: bytes) -> bytes:
    """``[k_i]P_i`` element by element (both batches of the same length)."""
    n = _check(points, POINT_BYTES, "point batch")
    if _check(scalars, SCALAR_BYTES, "scalar batch") != n:
        raise ConfigError("scalars", f"{len(scalars) // 32} scalars for {n} points")
    f = _lib().crypto_scalarmult_ristretto255
    src, out, ks = _buf(points), ctypes.create_string_buffer(n * POINT_BYTES), _buf(scalars)
    byref = ctypes.byref
    for i in range(n):
        off = POINT_BYTES * i
        if f(byref(out, off), byref(ks, off), byref(src, off)):
            raise ProtocolError(f"point {i} of a batch is not a valid ristretto255 element")
    return out.raw


def base_mult(scalars: bytes) -> bytes:
    """``[k_i]G`` for each scalar of the concatenation (G: the standard generator)."""
    n = _check(scalars, SCALAR_BYTES, "scalar batch")
    f = _lib().crypto_scalarmult_ristretto255_base
    ks, out = _buf(scalars), ctypes.create_string_buffer(n * POINT_BYTES)
    byref = ctypes.byref
    for i in range(n):
        if f(byref(out, POINT_BYTES * i), byref(ks, SCALAR_BYTES * i)):
            raise ConfigError("scalar", "a zero scalar")
    return out.raw


def _pointwise(fname: str, a: bytes, b: bytes) -> bytes:
    n = _check(a, POINT_BYTES, "point batch")
    if _check(b, POINT_BYTES, "point batch") != n:
        raise ProtocolError(f"point batches of {n} and {len(b) // POINT_BYTES} points")
    f = getattr(_lib(), fname)
    pa, pb, out = _buf(a), _buf(b), ctypes.create_string_buffer(n * POINT_BYTES)
    byref = ctypes.byref
    for i in range(n):
        off = POINT_BYTES * i
        if f(byref(out, off), byref(pa, off), byref(pb, off)):
            raise ProtocolError(f"point {i} of a batch is not a valid ristretto255 element")
    return out.raw


def add(a: bytes, b: bytes) -> bytes:
    """``A_i + B_i`` element by element."""
    return _pointwise("crypto_core_ristretto255_add", a, b)


def sub(a: bytes, b: bytes) -> bytes:
    """``A_i - B_i`` element by element."""
    return _pointwise("crypto_core_ristretto255_sub", a, b)


def random_scalars(n: int) -> bytes:
    """``n`` uniformly random non-zero scalars mod L (libsodium's generator)."""
    f = _lib().crypto_core_ristretto255_scalar_random
    out = ctypes.create_string_buffer(n * SCALAR_BYTES)
    byref = ctypes.byref
    for i in range(n):
        f(byref(out, SCALAR_BYTES * i))
    return out.raw


def random_scalar() -> bytes:
    """One uniformly random non-zero scalar mod L."""
    return random_scalars(1)


def scalar_mul(a: bytes, b: bytes) -> bytes:
    """``a * b mod L``."""
    _check_scalar(a)
    _check_scalar(b)
    out = ctypes.create_string_buffer(SCALAR_BYTES)
    _lib().crypto_core_ristretto255_scalar_mul(out, _buf(a), _buf(b))
    return out.raw


def scalar_invert(a: bytes) -> bytes:
    """``1 / a mod L``; a zero scalar is a :class:`ConfigError`."""
    _check_scalar(a)
    out = ctypes.create_string_buffer(SCALAR_BYTES)
    if _lib().crypto_core_ristretto255_scalar_invert(out, _buf(a)):
        raise ConfigError("scalar", "zero has no inverse")
    return out.raw


def _check_scalar(k: bytes) -> None:
    if not isinstance(k, bytes) or len(k) != SCALAR_BYTES:
        raise ConfigError("scalar", f"must be {SCALAR_BYTES} bytes", "make it with random_scalar()")
