"""Spreading big-integer batches over cores.

Two mechanisms, chosen by what measured fastest for each kernel:

* **threads** for ``gmpy2.powmod_base_list`` (decryption, ``c * scalar``): gmpy2 releases
  the GIL for the whole list, so threads scale with no copying;
* **worker processes** for the kernels that are loops of Python-level modular products
  (fixed-base randomisers, group sums, Pippenger multi-exponentiation): a pool started
  with ``forkserver`` (never a fork of a threaded parent), fed chunks of ``mpz`` via the
  local multiprocessing pipe. Nothing here crosses a network; fixed-base tables are
  rebuilt once per worker and cached there.

``set_workers(n)`` sets the degree (default: all cores; 1 = everything in-process). Small
batches always run in-process: starting work in a pool only pays off above a few ms.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import gmpy2
import numpy as np

from veil.crypto import _kernels as kern
from veil.crypto._fixedbase import FixedBase
from veil.errors import ConfigError

_STATE: dict[str, Any] = {"workers": os.cpu_count() or 1, "procs": None, "threads": None}
_LOCK = threading.Lock()
MIN_RANDOMISERS = 48  # per worker, below this stay in-process
MIN_PRODUCTS = 4096  # modular products per worker, below this stay in-process
MIN_POWMODS = 8


def get_workers() -> int:
    """Current degree of parallelism for HE batches."""
    return int(_STATE["workers"])


def set_workers(n: int) -> None:
    """Use ``n`` cores for large HE batches (1 = single core, in-process)."""
    if not isinstance(n, int) or n < 1:
        raise ConfigError("workers", f"must be an int >= 1, got {n!r}", "pass e.g. os.cpu_count()")
    with _LOCK:
        _shutdown_locked()
        _STATE["workers"] = n


def _shutdown_locked() -> None:
    for key in ("procs", "threads"):
        ex = _STATE[key]
        if ex is not None:
            ex.shutdown(wait=False, cancel_futures=True)
            _STATE[key] = None


def shutdown() -> None:
    with _LOCK:
        _shutdown_locked()


atexit.register(shutdown)


def _procs() -> Executor:
    with _LOCK:
        if _STATE["procs"] is None:
            ctx = multiprocessing.get_context("forkserver")
            _STATE["procs"] = ProcessPoolExecutor(max_workers=get_workers(), mp_context=ctx)
        ex: Executor = _STATE["procs"]
        return ex


def _threads() -> Executor:
    with _LOCK:
        if _STATE["threads"] is None:
            _STATE["threads"] = ThreadPoolExecutor(max_workers=get_workers())
        ex: Executor = _STATE["threads"]
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


# -- processes -------------------------------------------------------------------------
_TABLES: dict[tuple[int, int, int, int], FixedBase] = {}


def _worker_table(spec: tuple[int, int, int, int]) -> FixedBase:
    table = _TABLES.get(spec)
    if table is None:
        base, modulus, exp_bits, window = spec
        table = _TABLES[spec] = FixedBase(base, modulus, exp_bits, window)
    return table


def _task_random_pow(spec: tuple[int, int, int, int], count: int) -> list[Any]:
    table = _worker_table(spec)
    nb = -(-table.exp_bits // 8)
    return list(table.pow_digits(table.random_digits(count, os.urandom(count * nb))))


def random_pow(table: FixedBase, base: Any, count: int) -> np.ndarray:
    """``base ** r`` for ``count`` fresh uniform ``table.exp_bits``-bit exponents ``r``."""
    w = get_workers()
    if w == 1 or count < MIN_RANDOMISERS * w:
        nb = -(-table.exp_bits // 8)
        return table.pow_digits(table.random_digits(count, os.urandom(count * nb)))
    spec = (int(base), int(table.modulus), table.exp_bits, table.window)
    chunks = _split(count, 4 * w)  # several chunks per worker balance a loaded machine
    futs = [_procs().submit(_task_random_pow, spec, b - a) for a, b in chunks]
    out = np.empty(count, dtype=object)
    for (a, b), f in zip(chunks, futs, strict=True):
        out[a:b] = f.result()
    return out


def group_product(a: list[Any], groups: list[int], n_groups: int, m: Any) -> list[Any]:
    """Per-group products; chunks of rows go to workers, partial products are combined."""
    w = get_workers()
    if w == 1 or len(a) < MIN_PRODUCTS * w:
        return kern.group_product_serial(a, groups, n_groups, m)
    chunks = _split(len(a), w)
    futs = [
        _procs().submit(kern.group_product_serial, a[i:j], groups[i:j], n_groups, m)
        for i, j in chunks
    ]
    parts = [f.result() for f in futs]
    out = parts[0]
    for part in parts[1:]:
        out = [x * y % m if y != 1 else x for x, y in zip(out, part, strict=True)]
    return out


def _task_multi_exp(bases: list[Any], cols: list[list[int]], m: Any) -> list[Any]:
    return [kern.signed_multi_exp(bases, e, m) for e in cols]


def multi_exp_columns(bases: list[Any], cols: list[list[int]], m: Any) -> list[Any]:
    """``[prod_i bases[i] ** col[i] for col in cols]`` (signed exponents)."""
    n = len(bases)
    w = get_workers()
    if w == 1 or n * len(cols) < MIN_PRODUCTS * w:
        return _task_multi_exp(bases, cols, m)
    if len(cols) >= 2 * w:  # whole columns per worker: no combine step
        groups = _split(len(cols), w)
        futs = [_procs().submit(_task_multi_exp, bases, cols[a:b], m) for a, b in groups]
        return [r for f in futs for r in f.result()]
    chunks = _split(n, w)  # few columns: split the rows and multiply the partial results
    futs = [
        _procs().submit(_task_multi_exp, bases[i:j], [c[i:j] for c in cols], m) for i, j in chunks
    ]
    parts = [f.result() for f in futs]
    out = parts[0]
    for part in parts[1:]:
        out = [x * y % m for x, y in zip(out, part, strict=True)]
    return out
