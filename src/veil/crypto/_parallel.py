"""Spreading big-integer batches over cores.

Two mechanisms, chosen by what measured fastest for each kernel:

* **threads** for ``gmpy2.powmod_base_list`` (decryption, ``c * scalar``): gmpy2 releases
  the GIL for the whole list, so threads scale with no copying;
* **threads** for everything the C kernel runs (``_gmpkernel`` releases the GIL: fixed-base
  chains, group sums, Pippenger buckets, ct + ct), sharing tables and ciphertexts;
* **worker processes** for the same kernels as Python-level loops, where the C kernel is
  not built or ``VEIL_NATIVE=0``: see
  :mod:`veil.crypto._worker` (plain subprocesses speaking the Veil codec over pipes; no
  multiprocessing, no pickle). Fixed-base tables are rebuilt once per worker and cached.

``set_workers(n)`` sets the degree (default: the ``VEIL_HE_WORKERS`` environment variable,
else all cores; 1 = everything in-process, e.g. when each party of a local simulation
should keep to one core). Small
batches always run in-process: starting work in a pool only pays off above a few ms.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import gmpy2
import numpy as np

from veil.codec import IntArray
from veil.crypto import _kernels as kern
from veil.crypto._fixedbase import FixedBase
from veil.crypto._native import kernel
from veil.crypto._worker import Worker, pack_ints, unpack_ints
from veil.errors import ConfigError

_STATE: dict[str, Any] = {
    "workers": int(os.environ.get("VEIL_HE_WORKERS") or 0) or os.cpu_count() or 1,
    "procs": None,
    "threads": None,
}
_LOCK = threading.Lock()
MIN_RANDOMISERS = 48  # per worker, below this stay in-process
MIN_PRODUCTS = 4096  # modular products per worker, below this stay in-process
MIN_POWMODS = 8
MIN_MULMODS = 512  # per thread, below this ct + ct stays on one thread


def get_workers() -> int:
    """Current degree of parallelism for HE batches."""
    return int(_STATE["workers"])


def set_workers(n: int) -> None:
    """Use ``n`` cores for large HE batches (1 = single core, in-process)."""
    if not isinstance(n, int) or n < 1:
        raise ConfigError("workers", f"must be an int >= 1, got {n!r}", "pass e.g. os.cpu_count()")
    shutdown()
    _STATE["workers"] = n


def shutdown() -> None:
    """Stop worker processes and threads (they restart on demand)."""
    with _LOCK:  # detach under the lock, wait outside it (running tasks may need it)
        procs, _STATE["procs"] = _STATE["procs"], None
        execs = [_STATE.get(k) for k in ("threads", "background", "helper")]
        _STATE["threads"] = _STATE["background"] = _STATE["helper"] = None
    for ex in execs:
        if ex is not None:
            ex.shutdown(wait=True)
    if procs is not None:
        pool, idle = procs
        pool.shutdown(wait=True)
        while not idle.empty():
            idle.get().close()


atexit.register(shutdown)


def warm_up() -> None:
    """Start the worker processes now (they import in the background), so the first big
    batch does not wait for them. Does nothing with one worker, or with the C kernel
    (its batches run on threads: the processes would sit idle)."""
    if get_workers() > 1 and kernel() is None:  # a failure shows again on the first batch
        with contextlib.suppress(OSError):
            _pool()


def _pool() -> tuple[ThreadPoolExecutor, queue.Queue[Worker]]:
    with _LOCK:
        if _STATE["procs"] is None:
            idle: queue.Queue[Worker] = queue.Queue()
            for _ in range(get_workers()):
                idle.put(Worker())
            _STATE["procs"] = (ThreadPoolExecutor(max_workers=get_workers()), idle)
        procs: tuple[ThreadPoolExecutor, queue.Queue[Worker]] = _STATE["procs"]
        return procs


def _on_worker(op: str, *args: Any) -> Future[Any]:
    """Run ``op`` on the next idle worker process; returns a future of its result."""
    pool, idle = _pool()

    def run() -> Any:
        w = idle.get()
        try:
            return w.call(op, *args)
        finally:
            idle.put(w)

    fut: Future[Any] = pool.submit(run)
    return fut


class _WorkersFailed(Exception):
    """A worker process could not start or died; callers fall back to in-process work."""


def _results(futs: list[Future[Any]]) -> list[Any]:
    try:
        return [f.result() for f in futs]
    except (EOFError, OSError) as e:
        warnings.warn(f"HE worker processes failed ({e}); continuing on one core", stacklevel=3)
        shutdown()
        _STATE["workers"] = 1
        raise _WorkersFailed from e


def _submit_all(op: str, arg_lists: list[tuple[Any, ...]]) -> list[Any]:
    try:
        futs = [_on_worker(op, *args) for args in arg_lists]
    except OSError as e:
        futs = []
        failed: Future[Any] = Future()
        failed.set_exception(e)
        futs.append(failed)
    return _results(futs)


def background(fn: Any, *args: Any) -> Future[Any]:
    """Run ``fn(*args)`` on a background thread (e.g. filling a randomiser pool while the
    caller waits on the network; the work itself runs in worker processes)."""
    with _LOCK:
        if _STATE.get("background") is None:
            _STATE["background"] = ThreadPoolExecutor(max_workers=1)
        ex: ThreadPoolExecutor = _STATE["background"]
    return ex.submit(fn, *args)


def concurrently(fn: Any, *args: Any) -> Future[Any]:
    """Run ``fn(*args)`` on a helper thread now (e.g. driving the worker processes while
    the caller computes something else); never queued behind :func:`background` work."""
    with _LOCK:
        if _STATE.get("helper") is None:
            _STATE["helper"] = ThreadPoolExecutor(max_workers=4)
        ex: ThreadPoolExecutor = _STATE["helper"]
    return ex.submit(fn, *args)


def _threads() -> ThreadPoolExecutor:
    with _LOCK:
        if _STATE["threads"] is None:
            _STATE["threads"] = ThreadPoolExecutor(max_workers=get_workers())
        ex: ThreadPoolExecutor = _STATE["threads"]
        return ex


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(i, min(i + step, n)) for i in range(0, n, step)]


# -- threads: powmod_base_list releases the GIL ----------------------------------------
def powmod_base_list(bases: list[Any], k: int, m: Any) -> list[Any]:
    """``[b ** k mod m for b in bases]``, split over threads when large."""
    w = get_workers()
    if w == 1 or len(bases) < MIN_POWMODS * w:
        return list(gmpy2.powmod_base_list(bases, k, m))
    futs = [
        _threads().submit(gmpy2.powmod_base_list, bases[a:b], k, m)
        for a, b in _split(len(bases), w)
    ]
    out: list[Any] = []
    for f in futs:
        out.extend(f.result())
    return out


def split_threads(fn: Callable[[int, int], np.ndarray], count: int) -> np.ndarray:
    """``fn(0, count)`` as ``fn(a, b)`` on slices over threads, concatenated: for work that
    runs in the C kernel, which releases the GIL (the threads share its tables)."""
    w = get_workers()
    if w == 1 or count < MIN_RANDOMISERS * w:
        return fn(0, count)
    return np.concatenate(_thread_map(fn, _split(count, w)))


def table_pow(table: FixedBase, digits: np.ndarray, start: Any = None) -> np.ndarray:
    """``table.pow_digits(digits, start)``, split over threads when the C kernel runs it."""
    if not table.native():
        return table.pow_digits(digits, start)
    return split_threads(
        lambda a, b: table.pow_digits(digits[a:b], None if start is None else start[a:b]),
        len(digits),
    )


# -- processes -------------------------------------------------------------------------
def random_pow(table: FixedBase, count: int) -> np.ndarray:
    """``base ** r`` for ``count`` fresh uniform ``table.exp_bits``-bit exponents ``r``."""
    w = get_workers()
    if w == 1 or count < MIN_RANDOMISERS * w or table.native():
        return table_pow(table, table.random_digits(count))
    spec = list(table.spec())
    chunks = _split(count, 4 * w)  # several chunks per worker balance a loaded machine
    try:
        parts = _submit_all("random_pow", [(spec, b - a) for a, b in chunks])
    except _WorkersFailed:
        return random_pow(table, count)
    out = np.empty(count, dtype=object)
    for (a, b), part in zip(chunks, parts, strict=True):
        out[a:b] = kern.objects(unpack_ints(part))
    return out


def fixed_pow(table: FixedBase, exps: list[int]) -> np.ndarray:
    """``base ** e`` for non-negative ``e < 2**table.exp_bits`` (a fixed-base table)."""
    w = get_workers()
    if w == 1 or len(exps) < MIN_RANDOMISERS * 4 * w:
        return table.pow_ints(exps)
    vals = [int(e) for e in exps]
    if table.native():
        return table_pow(table, table.int_digits(vals))
    spec, nb = list(table.spec()), max(1, -(-max(vals).bit_length() // 8))
    chunks = _split(len(vals), 2 * w)
    try:
        jobs = [(spec, IntArray(vals[a:b], nb)) for a, b in chunks]
        parts = _submit_all("fixed_pow", jobs)
    except _WorkersFailed:
        return table.pow_ints(exps)
    out = np.empty(len(exps), dtype=object)
    for (a, b), part in zip(chunks, parts, strict=True):
        out[a:b] = kern.objects(unpack_ints(part))
    return out


def _combine(parts: list[list[Any]], m: Any) -> list[Any]:
    out = parts[0]
    for part in parts[1:]:
        out = [x * y % m if y != 1 else x for x, y in zip(out, part, strict=True)]
    return out


def group_product(a: list[Any], groups: list[int], n_groups: int, m: Any) -> list[Any]:
    """Per-group products of one grouping."""
    return group_product_columns(a, np.asarray(groups, dtype=np.int64).reshape(-1, 1), n_groups, m)


def group_product_columns(a: list[Any], G: np.ndarray, n_groups: int, m: Any) -> list[Any]:
    """Per-group products for each column of ``G`` (n, F), concatenated by column.

    Many columns: whole columns go to each worker. Few: rows are split and the partial
    products multiplied together.
    """
    n, F = G.shape
    w = get_workers()
    if w == 1 or n * F < MIN_PRODUCTS * w:
        return kern.group_product_columns(a, G, n_groups, m)
    if _in_c(m):  # threads: the C kernel releases the GIL, nothing is copied
        if w <= F:
            parts = _thread_map(
                lambda i, j: kern.group_product_columns(a, G[:, i:j], n_groups, m), _split(F, w)
            )
            return [r for p in parts for r in p]
        parts = _thread_map(
            lambda i, j: kern.group_product_columns(a[i:j], G[i:j], n_groups, m), _split(n, w)
        )
        return _combine(parts, m)
    try:
        if w <= F:
            wire = pack_ints(a, m)
            jobs = [(wire, G[:, i:j], n_groups, int(m)) for i, j in _split(F, w)]
            return [r for p in _submit_all("group_product", jobs) for r in unpack_ints(p)]
        jobs = [(pack_ints(a[i:j], m), G[i:j], n_groups, int(m)) for i, j in _split(n, w)]
        return _combine([unpack_ints(p) for p in _submit_all("group_product", jobs)], m)
    except _WorkersFailed:
        return kern.group_product_columns(a, G, n_groups, m)


def mulmod_list(a: list[Any], b: list[Any], m: Any) -> list[Any]:
    """``[a[i] * b[i] % m]``, split over threads when the C kernel runs it (GIL released)."""
    w = get_workers()
    if w == 1 or len(a) < MIN_MULMODS * w or len(a) != len(b) or not _in_c(m):
        return kern.mulmod_list(a, b, m)
    parts = _thread_map(lambda i, j: kern.mulmod_list(a[i:j], b[i:j], m), _split(len(a), w))
    return [r for p in parts for r in p]


def _in_c(m: Any) -> bool:
    """Whether products mod ``m`` run in the C kernel (odd multi-limb moduli)."""
    return kernel() is not None and bool(m & 1) and m.bit_length() > 64


def _thread_map(fn: Callable[[int, int], Any], ranges: list[tuple[int, int]]) -> list[Any]:
    """``[fn(a, b) for (a, b) in ranges]``, each call on a thread of the shared pool."""
    futs = [_threads().submit(fn, a, b) for a, b in ranges]
    return [f.result() for f in futs]


def _cols_wire(cols: list[list[int]] | np.ndarray, i: int = 0, j: int | None = None) -> Any:
    """Rows ``i:j`` of every exponent column, as the worker takes them."""
    if isinstance(cols, np.ndarray):
        return cols[:, i:j]
    cols = [c[i:j] for c in cols]
    big = any(abs(v) >= 1 << 62 for c in cols for v in c)
    return cols if big else np.array(cols, dtype=np.int64).reshape(len(cols), -1)


def multi_exp_columns(bases: list[Any], cols: list[list[int]] | np.ndarray, m: Any) -> list[Any]:
    """``[prod_i bases[i] ** col[i] for col in cols]`` (signed exponents): a list of int
    lists, or an int64 array (k, n) of exponents below 2**62 in magnitude."""
    n = len(bases)
    w = get_workers()
    if w == 1 or n * len(cols) < MIN_PRODUCTS * w:
        return [kern.signed_multi_exp(bases, c, m) for c in cols]
    if _in_c(m):  # threads: the buckets fill in the C kernel, which releases the GIL
        if len(cols) >= 2 * w:
            parts = _thread_map(
                lambda i, j: [kern.signed_multi_exp(bases, c, m) for c in cols[i:j]],
                _split(len(cols), w),
            )
            return [r for p in parts for r in p]
        parts = _thread_map(
            lambda i, j: [kern.signed_multi_exp(bases[i:j], c[i:j], m) for c in cols],
            _split(n, w),
        )
        return _combine(parts, m)
    try:
        if len(cols) >= 2 * w:  # whole columns per worker: no combine step
            wire = pack_ints(bases, m)
            jobs = [(wire, _cols_wire(cols[a:b]), int(m)) for a, b in _split(len(cols), w)]
            return [r for p in _submit_all("multi_exp", jobs) for r in unpack_ints(p)]
        jobs = [  # few columns: split the rows and multiply the partial results
            (pack_ints(bases[i:j], m), _cols_wire(cols, i, j), int(m)) for i, j in _split(n, w)
        ]
        return _combine([unpack_ints(p) for p in _submit_all("multi_exp", jobs)], m)
    except _WorkersFailed:
        return [kern.signed_multi_exp(bases, c, m) for c in cols]
