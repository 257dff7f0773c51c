"""The local HE backend: big-integer batches spread over this machine's cores.

Two mechanisms, chosen by what measured fastest for each kernel:

* **threads** for ``gmpy2.powmod_base_list`` (decryption, ``c * scalar``): gmpy2 releases
  the GIL for the whole list, so threads scale with no copying;
* **threads** for everything the C kernel runs (``_gmpkernel`` releases the GIL: fixed-base
  chains, group sums, Pippenger buckets, ct + ct), sharing tables and ciphertexts;
* **worker processes** for the same kernels as Python-level loops, where the C kernel is
  not built or ``VEIL_NATIVE=0``: see
  :mod:`veil.crypto._worker` (plain subprocesses speaking the Veil codec over pipes; no
  multiprocessing, no pickle). Fixed-base tables are rebuilt once per worker and cached.

A :class:`LocalBackend` starts nothing when it is made: its threads and processes start
with the first batch big enough to need them, and :meth:`LocalBackend.close` stops them
(a later batch starts them again). Small batches always run in the calling thread:
starting work in a pool only pays off above a few ms.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

import gmpy2
import numpy as np
from gmpy2 import mpz

from veil.codec import MIN_INT_WIDTH, IntArray
from veil.crypto import _kernels as kern
from veil.crypto._fixedbase import FixedBase
from veil.crypto._native import kernel
from veil.crypto._worker import Worker, pack_ints, unpack_ints
from veil.crypto.kernels import BigInt
from veil.errors import ConfigError

T = TypeVar("T")
WORKERS_ENV = "VEIL_HE_WORKERS"


def check_workers(n: object, field: str = "workers") -> int:
    """``n`` as a degree of parallelism (an int >= 1), else :class:`ConfigError`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(field, f"must be an int >= 1, got {n!r}", "pass e.g. os.cpu_count()")
    return n


class _WorkersFailed(Exception):
    """A worker process could not start or died; callers fall back to in-process work."""


class LocalBackend:
    """Runs HE batches on ``workers`` cores of this machine (default: all of them).

    ``workers=1`` keeps everything in the calling thread (e.g. each party of a local
    simulation on one core). Use it as a context manager, or call :meth:`close`, to stop
    its threads and worker processes.
    """

    # Below these sizes (per worker) a batch stays in the calling thread.
    min_randomisers = 48
    min_products = 4096  # modular products
    min_powmods = 8
    min_mulmods = 512  # ct + ct

    def __init__(self, workers: int | None = None) -> None:
        self._workers = check_workers(os.cpu_count() or 1 if workers is None else workers)
        self._lock = threading.Lock()
        self._procs: tuple[ThreadPoolExecutor, queue.Queue[Worker]] | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._background: ThreadPoolExecutor | None = None
        self._helper: ThreadPoolExecutor | None = None

    @classmethod
    def from_env(cls) -> LocalBackend:
        """A backend with ``VEIL_HE_WORKERS`` cores if that variable is set (and not 0),
        else all of them."""
        raw = os.environ.get(WORKERS_ENV, "").strip()
        try:
            n = int(raw or 0)
        except ValueError:
            raise ConfigError(WORKERS_ENV, f"must be an int >= 1, got {raw!r}", "") from None
        return cls(check_workers(n, WORKERS_ENV) if n else None)  # 0 or unset: all cores

    def __repr__(self) -> str:
        return f"LocalBackend(workers={self._workers})"

    @property
    def workers(self) -> int:
        """How many cores large batches use."""
        return self._workers

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Stop worker processes and threads (a later batch starts them again)."""
        with self._lock:  # detach under the lock, wait outside it (running tasks may need it)
            procs, self._procs = self._procs, None
            execs = [self._threads, self._background, self._helper]
            self._threads = self._background = self._helper = None
        for ex in execs:
            if ex is not None:
                ex.shutdown(wait=True)
        if procs is not None:
            pool, idle = procs
            pool.shutdown(wait=True)
            while not idle.empty():
                idle.get().close()

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def warm_up(self) -> None:
        """Start the worker processes now (they import in the background), so the first big
        batch does not wait for them. Does nothing with one worker, or with the C kernel
        (its batches run on threads: the processes would sit idle)."""
        if self._workers > 1 and kernel() is None:  # a failure shows again on the first batch
            with contextlib.suppress(OSError):
                self._pool()

    # -- pools -------------------------------------------------------------------------
    def _pool(self) -> tuple[ThreadPoolExecutor, queue.Queue[Worker]]:
        with self._lock:
            if self._procs is None:
                idle: queue.Queue[Worker] = queue.Queue()
                for _ in range(self._workers):
                    idle.put(Worker())
                self._procs = (ThreadPoolExecutor(max_workers=self._workers), idle)
            return self._procs

    def _on_worker(self, op: str, *args: object) -> Future[Any]:
        """Run ``op`` on the next idle worker process; returns a future of its result."""
        pool, idle = self._pool()

        def run() -> Any:
            w = idle.get()
            try:
                return w.call(op, *args)
            finally:
                idle.put(w)

        return pool.submit(run)

    def _results(self, futs: list[Future[Any]]) -> list[Any]:
        try:
            return [f.result() for f in futs]
        except (EOFError, OSError) as e:
            warnings.warn(f"HE worker processes failed ({e}); continuing on one core", stacklevel=4)
            self.close()
            self._workers = 1
            raise _WorkersFailed from e

    def _submit_all(self, op: str, arg_lists: list[tuple[object, ...]]) -> list[Any]:
        try:
            futs = [self._on_worker(op, *args) for args in arg_lists]
        except OSError as e:
            failed: Future[Any] = Future()
            failed.set_exception(e)
            futs = [failed]
        return self._results(futs)

    def _executor(self, which: str, size: int) -> ThreadPoolExecutor:
        with self._lock:
            ex: ThreadPoolExecutor | None = getattr(self, which)
            if ex is None:
                ex = ThreadPoolExecutor(max_workers=size)
                setattr(self, which, ex)
            return ex

    def background(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """Run ``fn(*args)`` on a background thread (e.g. filling a randomiser pool while the
        caller waits on the network), one such task at a time."""
        return self._executor("_background", 1).submit(fn, *args)

    def concurrently(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """Run ``fn(*args)`` on a helper thread now (e.g. driving the worker processes while
        the caller computes something else); never queued behind :meth:`background` work."""
        return self._executor("_helper", 4).submit(fn, *args)

    def _thread_map(self, fn: Callable[[int, int], T], ranges: list[tuple[int, int]]) -> list[T]:
        """``[fn(a, b) for (a, b) in ranges]``, each call on a thread of the shared pool."""
        ex = self._executor("_threads", self._workers)
        futs = [ex.submit(fn, a, b) for a, b in ranges]
        return [f.result() for f in futs]

    # -- threads: powmod_base_list releases the GIL ------------------------------------
    def powmod_base_list(self, bases: Sequence[BigInt], k: int, m: mpz) -> list[mpz]:
        """``[b ** k mod m for b in bases]``, split over threads when large."""
        w = self._workers
        if w == 1 or len(bases) < self.min_powmods * w:
            return list(gmpy2.powmod_base_list(bases, k, m))
        parts = self._thread_map(
            lambda a, b: gmpy2.powmod_base_list(bases[a:b], k, m), _split(len(bases), w)
        )
        return [r for p in parts for r in p]

    def map_ranges(self, fn: Callable[[int, int], np.ndarray], count: int) -> np.ndarray:
        """``fn(0, count)`` as ``fn(a, b)`` on slices over threads, concatenated: for work that
        runs in the C kernel, which releases the GIL (the threads share its tables)."""
        w = self._workers
        if w == 1 or count < self.min_randomisers * w:
            return fn(0, count)
        return np.concatenate(self._thread_map(fn, _split(count, w)))

    def table_pow(
        self, table: FixedBase, digits: np.ndarray, start: np.ndarray | None = None
    ) -> np.ndarray:
        """``table.pow_digits(digits, start)``, split over threads when the C kernel runs it."""
        if not table.native():
            return table.pow_digits(digits, start)
        return self.map_ranges(
            lambda a, b: table.pow_digits(digits[a:b], None if start is None else start[a:b]),
            len(digits),
        )

    # -- processes where the C kernel is missing ---------------------------------------
    def random_pow(self, table: FixedBase, count: int) -> np.ndarray:
        """``base ** r`` for ``count`` fresh uniform ``table.exp_bits``-bit exponents ``r``."""
        w = self._workers
        if w == 1 or count < self.min_randomisers * w or table.native():
            return self.table_pow(table, table.random_digits(count))
        spec = list(table.spec())
        chunks = _split(count, 4 * w)  # several chunks per worker balance a loaded machine
        try:
            parts = self._submit_all("random_pow", [(spec, b - a) for a, b in chunks])
        except _WorkersFailed:
            return self.random_pow(table, count)
        out = np.empty(count, dtype=object)
        for (a, b), part in zip(chunks, parts, strict=True):
            out[a:b] = kern.objects(unpack_ints(part))
        return out

    def fixed_pow(self, table: FixedBase, exps: Sequence[int]) -> np.ndarray:
        """``base ** e`` for non-negative ``e < 2**table.exp_bits`` (a fixed-base table)."""
        w = self._workers
        if w == 1 or len(exps) < self.min_randomisers * 4 * w:
            return table.pow_ints(exps)
        vals = [int(e) for e in exps]
        if table.native():
            return self.table_pow(table, table.int_digits(vals))
        spec, nb = list(table.spec()), max(MIN_INT_WIDTH, -(-max(vals).bit_length() // 8))
        chunks = _split(len(vals), 2 * w)
        try:
            jobs: list[tuple[object, ...]] = [(spec, IntArray(vals[a:b], nb)) for a, b in chunks]
            parts = self._submit_all("fixed_pow", jobs)
        except _WorkersFailed:
            return table.pow_ints(exps)
        out = np.empty(len(exps), dtype=object)
        for (a, b), part in zip(chunks, parts, strict=True):
            out[a:b] = kern.objects(unpack_ints(part))
        return out

    def group_product_columns(
        self, a: Sequence[BigInt], G: np.ndarray, n_groups: int, m: mpz
    ) -> list[mpz]:
        """Per-group products for each column of ``G`` (n, F), concatenated by column
        (``G < 0`` skipped, empty groups 1).

        Many columns: whole columns go to each worker. Few: rows are split and the partial
        products multiplied together.
        """
        a = _as_list(a)
        n, F = G.shape
        w = self._workers
        if w == 1 or n * F < self.min_products * w:
            return kern.group_product_columns(a, G, n_groups, m)
        if _in_c(m):  # threads: the C kernel releases the GIL, nothing is copied
            if w <= F:
                parts = self._thread_map(
                    lambda i, j: kern.group_product_columns(a, G[:, i:j], n_groups, m),
                    _split(F, w),
                )
                return [r for p in parts for r in p]
            parts = self._thread_map(
                lambda i, j: kern.group_product_columns(a[i:j], G[i:j], n_groups, m),
                _split(n, w),
            )
            return _combine(parts, m)
        try:
            if w <= F:
                wire = pack_ints(a, m)
                jobs: list[tuple[object, ...]] = [
                    (wire, G[:, i:j], n_groups, int(m)) for i, j in _split(F, w)
                ]
                done = self._submit_all("group_product", jobs)
                return [r for p in done for r in unpack_ints(p)]
            jobs = [(pack_ints(a[i:j], m), G[i:j], n_groups, int(m)) for i, j in _split(n, w)]
            return _combine([unpack_ints(p) for p in self._submit_all("group_product", jobs)], m)
        except _WorkersFailed:
            return kern.group_product_columns(a, G, n_groups, m)

    def mulmod_list(self, a: Sequence[BigInt], b: Sequence[BigInt], m: mpz) -> list[mpz]:
        """``[a[i] * b[i] % m]``, split over threads when the C kernel runs it (GIL released)."""
        a, b = _as_list(a), _as_list(b)
        w = self._workers
        if w == 1 or len(a) < self.min_mulmods * w or len(a) != len(b) or not _in_c(m):
            return kern.mulmod_list(a, b, m)
        parts = self._thread_map(
            lambda i, j: kern.mulmod_list(a[i:j], b[i:j], m), _split(len(a), w)
        )
        return [r for p in parts for r in p]

    def multi_exp_columns(
        self, bases: Sequence[BigInt], cols: Sequence[Sequence[int]] | np.ndarray, m: mpz
    ) -> list[mpz]:
        """``[prod_i bases[i] ** col[i] for col in cols]`` (signed exponents): int lists, or an
        int64 array (k, n) of exponents below 2**62 in magnitude."""
        bases = _as_list(bases)
        n = len(bases)
        w = self._workers
        if w == 1 or n * len(cols) < self.min_products * w:
            return [kern.signed_multi_exp(bases, _col(c), m) for c in cols]
        if _in_c(m):  # threads: the buckets fill in the C kernel, which releases the GIL
            if len(cols) >= 2 * w:
                parts = self._thread_map(
                    lambda i, j: [kern.signed_multi_exp(bases, _col(c), m) for c in cols[i:j]],
                    _split(len(cols), w),
                )
                return [r for p in parts for r in p]
            parts = self._thread_map(
                lambda i, j: [kern.signed_multi_exp(bases[i:j], _col(c)[i:j], m) for c in cols],
                _split(n, w),
            )
            return _combine(parts, m)
        try:
            if len(cols) >= 2 * w:  # whole columns per worker: no combine step
                wire = pack_ints(bases, m)
                jobs: list[tuple[object, ...]] = [
                    (wire, _cols_wire(cols[a:b]), int(m)) for a, b in _split(len(cols), w)
                ]
                return [r for p in self._submit_all("multi_exp", jobs) for r in unpack_ints(p)]
            jobs = [  # few columns: split the rows and multiply the partial results
                (pack_ints(bases[i:j], m), _cols_wire(cols, i, j), int(m)) for i, j in _split(n, w)
            ]
            return _combine([unpack_ints(p) for p in self._submit_all("multi_exp", jobs)], m)
        except _WorkersFailed:
            return [kern.signed_multi_exp(bases, _col(c), m) for c in cols]


def _as_list(values: Sequence[T]) -> list[T]:
    return values if isinstance(values, list) else list(values)


def _col(c: Sequence[int] | np.ndarray) -> list[int] | np.ndarray:
    return c if isinstance(c, np.ndarray | list) else list(c)


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def _combine(parts: list[list[Any]], m: mpz) -> list[mpz]:
    out = parts[0]
    for part in parts[1:]:
        out = [x * y % m if y != 1 else x for x, y in zip(out, part, strict=True)]
    return out


def _in_c(m: mpz) -> bool:
    """Whether products mod ``m`` run in the C kernel (odd multi-limb moduli)."""
    return kernel() is not None and bool(m & 1) and m.bit_length() > 64


def _cols_wire(
    cols: Sequence[Sequence[int]] | np.ndarray, i: int = 0, j: int | None = None
) -> list[list[int]] | np.ndarray:
    """Rows ``i:j`` of every exponent column, as the worker takes them."""
    if isinstance(cols, np.ndarray):
        return cols[:, i:j]
    part = [list(c[i:j]) for c in cols]
    big = any(abs(v) >= 1 << 62 for c in part for v in c)
    return part if big else np.array(part, dtype=np.int64).reshape(len(part), -1)
