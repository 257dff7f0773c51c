"""Elliptic-curve primitives for ECDH-PSI: hash ids to points, raise points to a secret.

Pure functions, no I/O. The default suite is the privacy-computing interconnection
suite (PPCA 9-2023) <Curve25519, SHA-256, hash-as-x>: the point of an id is
SHA-256(utf-8 id) read as a 32-byte little-endian Montgomery u-coordinate, and
``[k]P`` is libsodium's X25519 (``crypto_scalarmult``), which clamps ``k`` to a
multiple of the cofactor, so ``[a]([b]P) == [b]([a]P)`` for every u (curve or twist).

The suite object keeps curve, hash, point map and truncation selectable, so a
protocol variant (e.g. interconnection mode, which keeps the *last* bytes of each
point) reuses these functions instead of re-implementing them.

Batch functions take and return lists of 32-byte ``bytes``; :class:`ScalarMultiplier`
spreads a batch over a thread pool (cffi releases the GIL inside libsodium, so
threads use every core).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

from nacl.bindings import crypto_scalarmult
from nacl.exceptions import RuntimeError as NaclRuntimeError

from veil.errors import ConfigError, ProtocolError

POINT_BYTES = 32


class Curve(StrEnum):
    """Curves a suite may use."""

    CURVE25519 = "curve25519"


class HashAlg(StrEnum):
    """Hash functions applied to the utf-8 bytes of an id."""

    SHA256 = "sha256"


class PointMap(StrEnum):
    """How a digest becomes a point."""

    HASH_AS_X = "hash_as_x"  # digest is the little-endian u-coordinate (X25519 masks bit 255)


class Truncation(StrEnum):
    """Which bytes of a 32-byte point encoding a truncation keeps."""

    LOW = "low"  # the first bytes (least significant, uniformly distributed)
    HIGH = "high"  # the last bytes (what the interconnection reference peer keeps)


@dataclass(frozen=True)
class Suite:
    """A cipher suite: curve, hash, hash-to-point map, and which bytes truncation keeps."""

    curve: Curve = Curve.CURVE25519
    hash: HashAlg = HashAlg.SHA256
    point_map: PointMap = PointMap.HASH_AS_X
    truncation: Truncation = Truncation.LOW

    @property
    def name(self) -> str:
        """A stable name, exchanged by parties to check they agree."""
        return f"{self.curve}-{self.hash}-{self.point_map}-{self.truncation}"

    @property
    def point_bytes(self) -> int:
        """Length of an encoded point."""
        return POINT_BYTES


DEFAULT_SUITE = Suite()


def new_scalar(suite: Suite = DEFAULT_SUITE) -> bytes:
    """A fresh secret scalar from the OS generator (X25519 clamps it when used)."""
    del suite  # every suite so far takes 32 random bytes
    return secrets.token_bytes(32)


def hash_to_points(ids: Sequence[bytes], suite: Suite = DEFAULT_SUITE) -> list[bytes]:
    """The curve point of each id (its utf-8 bytes), as 32-byte encodings."""
    if suite.hash is not HashAlg.SHA256 or suite.point_map is not PointMap.HASH_AS_X:
        raise ConfigError("suite", f"unsupported suite {suite.name}", "use DEFAULT_SUITE")
    sha = hashlib.sha256
    return [sha(i).digest() for i in ids]


def truncate(points: Sequence[bytes], nbytes: int, suite: Suite = DEFAULT_SUITE) -> bytes:
    """Keep ``nbytes`` of each point (which ones: ``suite.truncation``); concatenated."""
    if not 1 <= nbytes <= POINT_BYTES:
        raise ConfigError("truncate_bytes", f"{nbytes} is not in 1..{POINT_BYTES}")
    if suite.truncation is Truncation.LOW:
        return b"".join(p[:nbytes] for p in points)
    return b"".join(p[POINT_BYTES - nbytes :] for p in points)


def split_points(data: bytes, width: int = POINT_BYTES) -> list[bytes]:
    """Cut a concatenation of fixed-width values back into a list (checks the length)."""
    if len(data) % width:
        raise ProtocolError(f"point batch of {len(data)} bytes is not a multiple of {width}")
    return [data[i : i + width] for i in range(0, len(data), width)]


def _mul_chunk(scalar: bytes, points: Sequence[bytes]) -> list[bytes]:
    try:
        return [crypto_scalarmult(scalar, p) for p in points]
    except NaclRuntimeError as e:  # a point of small order gives the all-zero output
        raise ProtocolError(f"peer sent a point of small order: {e}") from e


def scalar_mult(scalar: bytes, points: Sequence[bytes]) -> list[bytes]:
    """``[scalar]P`` for every point, in this thread."""
    _check_scalar(scalar)
    for p in points:
        if len(p) != POINT_BYTES:
            raise ProtocolError(f"a point is {len(p)} bytes, expected {POINT_BYTES}")
    return _mul_chunk(scalar, points)


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
    """Batch X25519 over a thread pool; use as a context manager (closes the pool)."""

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError("threads", f"must be a positive integer or None, got {threads!r}")
        self.threads = threads or default_threads()
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def __call__(self, scalar: bytes, points: Sequence[bytes]) -> list[bytes]:
        """``[scalar]P`` for every point, order kept."""
        _check_scalar(scalar)
        if any(len(p) != POINT_BYTES for p in points):
            raise ProtocolError(f"a point in the batch is not {POINT_BYTES} bytes")
        n = len(points)
        if self._pool is None or n < 64:
            return _mul_chunk(scalar, points)
        step = -(-n // self.threads)
        futures = [
            self._pool.submit(_mul_chunk, scalar, points[i : i + step]) for i in range(0, n, step)
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
