"""Elliptic-curve primitives for ECDH-PSI: hash ids to points, raise points to a secret.

Pure functions, no I/O. Two suites, named as :class:`veil.policy.SecurityPolicy`
names them:

``ristretto255`` (default between Veil parties). An id's point is
``from_hash(SHA-512(DST || utf-8 id))`` in the prime-order group ristretto255
[RFC 9496; the hash-to-group of RFC 9380 style with one 64-byte digest], and ``[k]P``
is libsodium's ``crypto_scalarmult_ristretto255`` with ``k`` a uniform non-zero
scalar mod L (see :mod:`veil.crypto.ristretto`). Every id maps to a uniformly random
element of one group of prime order, so a peer's blinded values carry no bit about
ids outside the intersection.

``curve25519-hash-as-x`` (the privacy-computing interconnection standard, PPCA 9-2023,
kept for that wire). The point of an id is SHA-256(utf-8 id) read as a 32-byte
little-endian Montgomery u-coordinate, and ``[k]P`` is libsodium's X25519, which
clamps ``k`` to a multiple of the cofactor, so ``[a]([b]P) == [b]([a]P)`` for every u.
About half the digests are u-coordinates on the curve and half on its quadratic twist,
and ``[k]P`` stays on the same one; which one is public (a Legendre symbol of u^3 +
486662 u^2 + u), so a peer that receives ``[k]H(x)`` learns, for every id x, whether
H(x) is on the curve or the twist: one bit per id outside the intersection too.

The suite object also says which bytes a truncation keeps (the interconnection peer
keeps the *last* bytes of each point), so a protocol variant reuses these functions.
Batch functions take and return lists of 32-byte ``bytes``; :class:`ScalarMultiplier`
spreads a batch over a thread pool (both PyNaCl's cffi and ctypes release the GIL
inside libsodium, so threads use every core).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, TypeVar

from nacl.bindings import crypto_scalarmult
from nacl.exceptions import RuntimeError as NaclRuntimeError

from veil.crypto import ristretto
from veil.errors import ConfigError, ProtocolError

T = TypeVar("T")
POINT_BYTES = 32
RISTRETTO_DST = b"veil-psi-v1-ristretto255-sha512:"  # domain separation of the id hash


class Group(StrEnum):
    """The group and hash-to-group of a suite; the value is the policy's suite name."""

    RISTRETTO255 = "ristretto255"
    CURVE25519_HASH_AS_X = "curve25519-hash-as-x"


class Truncation(StrEnum):
    """Which bytes of a 32-byte point encoding a truncation keeps."""

    LOW = "low"  # the first uniformly distributed bytes
    HIGH = "high"  # the last bytes (what the interconnection reference peer keeps)


@dataclass(frozen=True)
class Suite:
    """A cipher suite: group with its hash-to-group, and which bytes truncation keeps."""

    group: Group = Group.RISTRETTO255
    truncation: Truncation = Truncation.LOW

    @property
    def name(self) -> str:
        """The suite's name in :attr:`veil.policy.SecurityPolicy.psi_suites`."""
        return str(self.group)

    @property
    def wire_name(self) -> str:
        """A stable name of group and truncation, exchanged by parties to check they agree."""
        return f"{self.group}/{self.truncation}"

    @property
    def point_bytes(self) -> int:
        """Length of an encoded point."""
        return POINT_BYTES

    @property
    def uniform_bytes(self) -> int:
        """How many bytes a truncation may keep. A ristretto255 encoding is an even field
        element, so its first byte has a fixed bit: LOW truncation skips that byte."""
        if self.group is Group.RISTRETTO255 and self.truncation is Truncation.LOW:
            return POINT_BYTES - 1
        return POINT_BYTES


RISTRETTO255 = Suite(Group.RISTRETTO255)
HASH_AS_X = Suite(Group.CURVE25519_HASH_AS_X)
DEFAULT_SUITE = RISTRETTO255


def new_scalar(suite: Suite = DEFAULT_SUITE) -> bytes:
    """A fresh secret scalar: uniform non-zero mod L (ristretto255), or 32 random bytes
    that X25519 clamps when used (hash-as-x)."""
    if suite.group is Group.RISTRETTO255:
        return ristretto.random_scalar()
    return secrets.token_bytes(32)


def hash_to_points(ids: Sequence[bytes], suite: Suite = DEFAULT_SUITE) -> list[bytes]:
    """The group element of each id (its utf-8 bytes), as 32-byte encodings."""
    if suite.group is Group.CURVE25519_HASH_AS_X:
        sha = hashlib.sha256
        return [sha(i).digest() for i in ids]
    if suite.group is not Group.RISTRETTO255:
        raise ConfigError("suite", f"unsupported suite {suite.name}", "use DEFAULT_SUITE")
    sha512, dst = hashlib.sha512, RISTRETTO_DST
    return split_points(ristretto.from_hash(b"".join([sha512(dst + i).digest() for i in ids])))


def truncate(points: Sequence[bytes], nbytes: int, suite: Suite = DEFAULT_SUITE) -> bytes:
    """Keep ``nbytes`` of each point (which ones: ``suite.truncation``); concatenated."""
    if not 1 <= nbytes <= suite.uniform_bytes:
        raise ConfigError("truncate_bytes", f"{nbytes} is not in 1..{suite.uniform_bytes}")
    if suite.truncation is Truncation.HIGH:
        return b"".join(p[POINT_BYTES - nbytes :] for p in points)
    lo = POINT_BYTES - suite.uniform_bytes
    return b"".join(p[lo : lo + nbytes] for p in points)


def split_points(data: bytes, width: int = POINT_BYTES) -> list[bytes]:
    """Cut a concatenation of fixed-width values back into a list (checks the length)."""
    if len(data) % width:
        raise ProtocolError(f"point batch of {len(data)} bytes is not a multiple of {width}")
    return [data[i : i + width] for i in range(0, len(data), width)]


def _mul_chunk(scalar: bytes, points: Sequence[bytes], suite: Suite) -> list[bytes]:
    if suite.group is Group.RISTRETTO255:
        return split_points(ristretto.scalar_mult(scalar, b"".join(points)))
    try:
        return [crypto_scalarmult(scalar, p) for p in points]
    except NaclRuntimeError as e:  # a point of small order gives the all-zero output
        raise ProtocolError(f"peer sent a point of small order: {e}") from e


def scalar_mult(
    scalar: bytes, points: Sequence[bytes], suite: Suite = DEFAULT_SUITE
) -> list[bytes]:
    """``[scalar]P`` for every point, in this thread."""
    _check_scalar(scalar)
    for p in points:
        if len(p) != POINT_BYTES:
            raise ProtocolError(f"a point is {len(p)} bytes, expected {POINT_BYTES}")
    return _mul_chunk(scalar, points, suite)


def _check_scalar(scalar: bytes) -> None:
    if not isinstance(scalar, bytes) or len(scalar) != 32:
        raise ConfigError("scalar", "must be 32 bytes", "make it with new_scalar()")


def default_threads() -> int:
    """Threads to use when the caller says None: every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class ScalarMultiplier:
    """Batch scalar multiplication of one suite over a thread pool; use as a context
    manager (closes the pool)."""

    def __init__(self, threads: int | None = None, suite: Suite = DEFAULT_SUITE) -> None:
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError("threads", f"must be a positive integer or None, got {threads!r}")
        self.threads = threads or default_threads()
        self.suite = suite
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def map(self, fn: Callable[..., T], n: int, *args: Any) -> list[T]:
        """Run ``fn(lo, hi, *args)`` over ``range(n)`` cut in one slice per thread; the
        results in order (for batch work other than a plain scalar multiplication)."""
        step = -(-n // self.threads) if n >= 64 else max(n, 1)
        if self._pool is None or step >= n:
            return [fn(0, n, *args)]
        futures = [self._pool.submit(fn, lo, min(lo + step, n), *args) for lo in range(0, n, step)]
        return [f.result() for f in futures]

    def __call__(self, scalar: bytes, points: Sequence[bytes]) -> list[bytes]:
        """``[scalar]P`` for every point, order kept."""
        _check_scalar(scalar)
        if any(len(p) != POINT_BYTES for p in points):
            raise ProtocolError(f"a point in the batch is not {POINT_BYTES} bytes")
        n = len(points)
        if self._pool is None or n < 64:
            return _mul_chunk(scalar, points, self.suite)
        step = -(-n // self.threads)
        futures = [
            self._pool.submit(_mul_chunk, scalar, points[i : i + step], self.suite)
            for i in range(0, n, step)
        ]
        out: list[bytes] = []
        for f in futures:
            out += f.result()
        return out

    def close(self) -> None:
        """Stop the pool's threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> ScalarMultiplier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
