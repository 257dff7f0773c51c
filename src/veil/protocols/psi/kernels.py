"""Who runs a PSI party's per-id work: ECDH's hashing, blinding and truncating, and
KKRT's OPRF code words and output hashes.

ECDH-PSI (:mod:`.ecdh`) spends its time in two data-parallel kernels, each over one
batch of ids or points and with this party's secret scalar:

- :meth:`PointKernels.hash_blind`: ``[k]H(x)`` for each id, concatenated;
- :meth:`PointKernels.blind_truncate`: ``[k]P`` for each peer point, truncated.

KKRT-PSI (:mod:`.kkrt`) runs its per-row kernels through :meth:`PointKernels.map_chunks`
(the batch cut in :meth:`PointKernels.split` ranges): :func:`oprf_receiver_values`
(the receiver's OPRF outputs ``H(j, t_j)``) and :func:`oprf_sender_values` (the sender's
``H(j, q_j ^ (C(y, i) & s))``, code words included); the OT extension itself, a
sequential key stream, stays in the protocol's process.

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
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from veil.crypto import ecc
from veil.errors import ConfigError
from veil.protocols.psi import ot

R = TypeVar("R")


@runtime_checkable
class PointKernels(Protocol):
    """The batch kernels of a PSI party (its own; results in input order)."""

    def hash_blind(self, scalar: bytes, ids: Sequence[bytes], suite: ecc.Suite) -> bytes:
        """``[scalar]H(id)`` for each id (utf-8 bytes), 32-byte points concatenated."""
        ...

    def blind_truncate(self, scalar: bytes, points: bytes, nbytes: int, suite: ecc.Suite) -> bytes:
        """``[scalar]P`` for each 32-byte point of ``points``, each truncated to ``nbytes``
        (which bytes: the suite's), concatenated."""
        ...

    def split(self, n: int) -> list[tuple[int, int]]:
        """``[a, b)`` ranges cutting a batch of ``n`` rows into this engine's chunks
        (one range: the batch runs here whole)."""
        ...

    def map_chunks(self, fn: Callable[..., R], arg_lists: Sequence[tuple[object, ...]]) -> list[R]:
        """``[fn(*args) for args in arg_lists]``, in order; ``fn`` must be a module-level
        function (it may run in another process or machine of this party)."""
        ...

    def close(self) -> None:
        """Release threads or connections this object holds for one run."""
        ...


def split_rows(n: int, parts: int, least: int = 1) -> list[tuple[int, int]]:
    """``[a, b)`` ranges cutting ``n`` rows into at most ``parts`` nearly equal parts of
    at least ``least`` rows (one range, maybe empty, for a small ``n``)."""
    parts = max(1, min(parts, n // max(least, 1)))
    step = -(-n // parts) if n else 1
    return [(i, min(i + step, n)) for i in range(0, n, step)] or [(0, 0)]


def oprf_receiver_values(t_rows: np.ndarray, bins: np.ndarray, nbytes: int, person: bytes) -> bytes:
    """KKRT receiver: its OPRF output ``H(j, t_j)`` for each row ``t_j`` at bin ``j``."""
    return ot.row_hash(t_rows, bins, nbytes, person)


@dataclass(frozen=True)
class OprfSenderKey:
    """What the KKRT sender's kernel needs for a whole run: the code key, its choice
    vector ``s`` (its OPRF key: it goes only to this party's own engine), the output
    width and the hash personalisation."""

    code_key: bytes
    s: np.ndarray
    nbytes: int
    person: bytes


def oprf_sender_values(
    key: OprfSenderKey,
    tags: np.ndarray,
    hash_index: np.ndarray,
    q_rows: np.ndarray,
    bins: np.ndarray,
) -> bytes:
    """KKRT sender: ``H(j, q_j ^ (C(y, i) & s))`` for each (tag of y, hash index i, row
    q_j of its bin j): the OPRF of y under hash function i."""
    codes = ot.code_words(key.code_key, tags, hash_index)
    return ot.row_hash(q_rows ^ (codes & key.s), bins, key.nbytes, key.person)


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

    def split(self, n: int) -> list[tuple[int, int]]:
        return [(0, n)]  # KKRT's kernels are serial numpy/hashlib: one call, this thread

    def map_chunks(self, fn: Callable[..., R], arg_lists: Sequence[tuple[object, ...]]) -> list[R]:
        return [fn(*args) for args in arg_lists]

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
