"""The engine interface: where one party's data-parallel kernels run.

A party's heavy work is a few kernels over batches of independent rows: ECDH-PSI's
hashing, blinding and truncation (:class:`~veil.protocols.psi.kernels.PointKernels`),
HE batch encryption, decryption and the SecureBoost partner's histogram products
(:class:`~veil.crypto.backend.HEBackend`), and batch scoring over partitions
(:meth:`Engine.map_ordered`). An :class:`Engine` supplies all three; :func:`install`
makes one this process's engine for the duration of a job.

Two engines: :class:`LocalEngine` (this machine's threads and processes; the default,
today's behaviour) and :class:`veil.engine.ray_engine.RayEngine` (this party's Ray
cluster; ``pip install veil[ray]``). Both give the same bytes: the kernels are the same
serial functions, only where their chunks run differs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, TypeVar, runtime_checkable

from veil.crypto.backend import HEBackend, default_backend, set_default_backend
from veil.engine.spec import LOCAL, parse_engine
from veil.engine.window import DEFAULT_WINDOW, ordered_window
from veil.protocols.psi.kernels import LocalPointKernels, PointKernels, set_point_kernels

T = TypeVar("T")
R = TypeVar("R")
H = TypeVar("H")


@runtime_checkable
class Engine(Protocol):
    """What a party's kernels run on (see the module docstring)."""

    @property
    def url(self) -> str:
        """``local`` or ``ray://HOST:PORT``."""
        ...

    @property
    def workers(self) -> int:
        """Cores the engine spreads a batch over."""
        ...

    def he_backend(self) -> HEBackend:
        """The backend HE keys of this party run their batches on."""
        ...

    def point_kernels(self, threads: int | None) -> PointKernels:
        """ECDH-PSI's kernels for one run (``threads``: the run's option, local only)."""
        ...

    def map_ordered(
        self, fn: Callable[[T], R], items: Iterable[T], *, window: int | None = None
    ) -> Iterator[R]:
        """``fn(item)`` for each item, yielded in input order while at most ``window``
        items are in flight (memory stays bounded however many items there are).
        ``fn`` must be a module-level function (it may run in another process)."""
        ...

    def close(self) -> None:
        """Release threads, processes and connections."""
        ...


class LocalEngine:
    """This machine: the process's HE backend, thread-pool PSI kernels, threads for maps."""

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None

    @property
    def url(self) -> str:
        return LOCAL

    @property
    def workers(self) -> int:
        return self._workers or default_backend().workers

    def he_backend(self) -> HEBackend:
        return default_backend()

    def point_kernels(self, threads: int | None) -> PointKernels:
        return LocalPointKernels(threads)

    def map_ordered(
        self, fn: Callable[[T], R], items: Iterable[T], *, window: int | None = None
    ) -> Iterator[R]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="veil-engine")
        pool = self._pool

        def submit(item: T) -> Future[R]:
            return pool.submit(fn, item)

        return ordered_window(
            submit, lambda f: f.result(), items, window or DEFAULT_WINDOW * self.workers
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def open_engine(url: str | None) -> Engine:
    """The engine of ``url`` (``local``, None, or ``ray://HOST:PORT``); Ray is imported
    only for a Ray URL (a ConfigError says how to install it if it is missing)."""
    spec = parse_engine(url)
    if spec.kind == LOCAL:
        return LocalEngine()
    from veil.engine.ray_engine import RayEngine

    assert spec.address is not None
    return RayEngine(spec.address)


@contextlib.contextmanager
def install(engine: Engine | str | None) -> Iterator[Engine]:
    """Make ``engine`` (or the engine of a URL, closed after) this process's engine: keys
    made without a backend run their HE batches on it, and ECDH-PSI runs its kernels
    on it. The previous defaults come back when the block ends."""
    owned = not isinstance(engine, Engine)
    eng = open_engine(engine) if not isinstance(engine, Engine) else engine
    try:
        backend = eng.he_backend()
        old_factory = set_point_kernels(eng.point_kernels)
        old_backend = default_backend()
        set_default_backend(backend)
        try:
            yield eng
        finally:
            set_default_backend(old_backend)
            set_point_kernels(old_factory)
    finally:
        if owned:
            eng.close()
