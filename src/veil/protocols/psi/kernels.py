"""Who runs ECDH-PSI's per-id work: hashing ids to points, blinding, truncating.

ECDH-PSI (:mod:`.ecdh`) spends its time in two data-parallel kernels, each over one
batch of ids or points and with this party's secret scalar:

- :meth:`PointKernels.hash_blind`: ``[k]H(x)`` for each id, concatenated;
- :meth:`PointKernels.blind_truncate`: ``[k]P`` for each peer point, truncated.

:class:`LocalPointKernels` (the default) runs them on a thread pool of this process. A
scale-out engine (:mod:`veil.engine`, e.g. a Ray cluster of this party) installs its own
with :func:`set_point_kernels`; the results are the same bytes either way, so the
protocol, the wire and the partner do not change. The secret scalar goes only where
this party's own kernels run.

Importing this module starts nothing: the pool is made when a run opens the kernels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from veil.crypto import ecc
from veil.errors import ConfigError


@runtime_checkable
class PointKernels(Protocol):
    """The batch kernels of ECDH-PSI (one party's; results in input order)."""

    def hash_blind(self, scalar: bytes, ids: Sequence[bytes], suite: ecc.Suite) -> bytes:
        """``[scalar]H(id)`` for each id (utf-8 bytes), 32-byte points concatenated."""
        ...

    def blind_truncate(self, scalar: bytes, points: bytes, nbytes: int, suite: ecc.Suite) -> bytes:
        """``[scalar]P`` for each 32-byte point of ``points``, each truncated to ``nbytes``
        (which bytes: the suite's), concatenated."""
        ...

    def close(self) -> None:
        """Release threads or connections this object holds for one run."""
        ...


def hash_blind(scalar: bytes, ids: Sequence[bytes], suite: ecc.Suite) -> bytes:
    """:meth:`PointKernels.hash_blind` in the calling thread (what a remote task runs)."""
    return b"".join(ecc.scalar_mult(scalar, ecc.hash_to_points(ids, suite), suite))


def blind_truncate(scalar: bytes, points: bytes, nbytes: int, suite: ecc.Suite) -> bytes:
    """:meth:`PointKernels.blind_truncate` in the calling thread (what a remote task runs)."""
    return ecc.truncate(ecc.scalar_mult(scalar, ecc.split_points(points), suite), nbytes, suite)


class LocalPointKernels:
    """The kernels on ``threads`` threads of this process (None: every core)."""

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads
        self._muls: dict[ecc.Suite, ecc.ScalarMultiplier] = {}

    def _mul(self, suite: ecc.Suite) -> ecc.ScalarMultiplier:
        mul = self._muls.get(suite)
        if mul is None:
            mul = self._muls[suite] = ecc.ScalarMultiplier(self._threads, suite)
        return mul

    def hash_blind(self, scalar: bytes, ids: Sequence[bytes], suite: ecc.Suite) -> bytes:
        return b"".join(self._mul(suite)(scalar, ecc.hash_to_points(ids, suite)))

    def blind_truncate(self, scalar: bytes, points: bytes, nbytes: int, suite: ecc.Suite) -> bytes:
        return ecc.truncate(self._mul(suite)(scalar, ecc.split_points(points)), nbytes, suite)

    def close(self) -> None:
        for mul in self._muls.values():
            mul.close()
        self._muls.clear()


KernelsFactory = Callable[[int | None], PointKernels]
"""Makes the kernels of one PSI run from its ``threads`` option."""

_lock = threading.Lock()
_factory: KernelsFactory = LocalPointKernels


def set_point_kernels(factory: KernelsFactory | None) -> KernelsFactory:
    """Make ``factory`` open the kernels of every later ECDH-PSI run in this process
    (None: back to :class:`LocalPointKernels`); returns the previous factory."""
    global _factory
    if factory is not None and not callable(factory):
        raise ConfigError("point_kernels", f"{factory!r} is not callable", "pass a factory")
    with _lock:
        old, _factory = _factory, factory or LocalPointKernels
    return old


def open_point_kernels(threads: int | None) -> PointKernels:
    """The kernels of one run, from the factory installed now (close them after)."""
    with _lock:
        factory = _factory
    return factory(threads)
