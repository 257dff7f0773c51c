"""This party's Ray cluster as its engine (``pip install veil[ray]``).

:class:`RayEngine` connects to a running cluster through Ray Client
(``ray://HOST:PORT``; ``ray start --head`` serves it on port 10001) and sends the
chunks of each batch to the cluster as Ray tasks that run the serial kernels of
:mod:`veil.engine.tasks`; results come back in input order, so they are the bytes the
local engine computes. Only this party's cluster sees its data and keys: Ray moves them
between this party's own machines (its object store), never to a partner.

Faults: a task whose worker process or node dies is re-run by Ray (``max_retries``);
a lost head (or a cluster that cannot be reached) stops the job with
:class:`EngineLost`, naming the address, never with a partial or wrong result.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from gmpy2 import mpz

from veil.crypto import ecc
from veil.crypto.backend import LocalBackend
from veil.crypto.kernels import BigInt, FixedBase
from veil.engine import tasks
from veil.engine.window import DEFAULT_WINDOW, ordered_window
from veil.errors import ConfigError, VeilError
from veil.protocols.psi.kernels import PointKernels, split_rows

try:
    import ray
    from ray import exceptions as ray_errors
except ImportError as e:  # pragma: no cover - exercised by the import probe test
    raise ConfigError(
        "engine", f"a Ray engine needs Ray, which is not installed ({e})", "pip install 'veil[ray]'"
    ) from None

T = TypeVar("T")
R = TypeVar("R")
MAX_RETRIES = 3  # a task whose worker dies is re-run this many times (Ray's retries)
MIN_IDS_PER_TASK = 256  # PSI: fewer ids per task cost more in scheduling than they save
RECONNECT_GRACE_S = "5"  # Ray Client: how long a lost head may take to come back
REACH_TIMEOUT_S = 10.0  # a TCP connect to the client port before Ray Client tries

_lock = threading.Lock()
_connected: list[str] = []  # the address this process's Ray Client is connected to


class EngineLost(VeilError):
    """The Ray cluster went away (head lost, or unreachable): the job stops."""


SERVER_START_TRIES = 4
# the head accepted the connection but its per-client server did not come up (Ray's
# proxy starts one process per client; seen failing now and then on a busy machine)
_SERVER_START_FAILED = ("Starting Ray client server failed", "Initialization failure from server")


def _check_reachable(address: str) -> None:
    """Fail at once, naming the address, when nothing listens there (Ray Client itself
    waits about 30 s before it gives up on a refused port)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as e:
        raise ConfigError(
            "engine",
            f"cannot reach the Ray cluster at ray://{address}: {type(e).__name__}: {e}",
            "start it with 'ray start --head' and give its client address (port 10001)",
        ) from None


def _connect(address: str) -> None:
    with _lock:
        if _connected and ray.is_initialized():
            if _connected[0] != address:
                raise ConfigError(
                    "engine",
                    f"this process already uses the Ray cluster at ray://{_connected[0]}",
                    "give every engine of one process the same address",
                )
            return
        _check_reachable(address)
        os.environ.setdefault("RAY_CLIENT_RECONNECT_GRACE_PERIOD", RECONNECT_GRACE_S)
        for attempt in range(SERVER_START_TRIES):
            try:
                ray.init(
                    address=f"ray://{address}", logging_level=logging.ERROR, log_to_driver=False
                )
                break
            except Exception as e:
                # the head's client proxy starts one server process per client; on a busy
                # machine that start can fail once: try again, never for a refused address
                transient = any(m in str(e) for m in _SERVER_START_FAILED)
                if transient and attempt + 1 < SERVER_START_TRIES:
                    time.sleep(2.0 * (attempt + 1))
                    continue
                raise ConfigError(
                    "engine",
                    f"cannot reach the Ray cluster at ray://{address}: {type(e).__name__}: {e}",
                    "start it with 'ray start --head' and give its client address (port 10001)",
                ) from None
        _connected[:] = [address]


def disconnect() -> None:
    """Close this process's Ray Client connection (the cluster keeps running)."""
    with _lock:
        if _connected:
            ray.shutdown()
            _connected.clear()


class RayEngine:
    """The Ray cluster at ``address`` (``HOST:PORT`` of its client server).

    ``min_batch``: the smallest batch the HE backend sends to the cluster (default:
    :class:`LocalBackend`'s thresholds; tests pass 1 to send everything)."""

    def __init__(
        self, address: str, *, min_batch: int | None = None, max_retries: int = MAX_RETRIES
    ) -> None:
        _connect(address)
        self._address = address
        self._min_batch = min_batch
        self._retries = max_retries
        self._remote: dict[Callable[..., object], Any] = {}  # fn -> its Ray remote function
        self.tasks_run = 0  # how many tasks this engine sent (tests check it is used)
        try:
            cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]
        except Exception as e:
            raise self._lost(e) from None
        self._workers = max(1, int(cpus))

    @property
    def url(self) -> str:
        return f"ray://{self._address}"

    @property
    def workers(self) -> int:
        return self._workers

    # -- running tasks -------------------------------------------------------------------
    def _lost(self, e: BaseException) -> EngineLost:
        return EngineLost(
            f"the Ray cluster at {self.url} was lost ({type(e).__name__}: {e}); the job "
            "stops, no partial result is used: restart the cluster and run the job again"
        )

    def submit(self, fn: Callable[..., R], *args: object) -> ray.ObjectRef[R]:
        """Start ``fn(*args)`` on the cluster; returns its object ref."""
        if not inspect.isfunction(fn):  # a partial or a bound method travels as an argument
            fn, args = tasks.call, (fn, *args)  # type: ignore[assignment]
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = ray.remote(max_retries=self._retries, num_cpus=1)(fn)
        self.tasks_run += 1
        try:
            ref: ray.ObjectRef[R] = remote.remote(*args)
            return ref
        except Exception as e:
            raise self._lost(e) from None

    def get(self, refs: Sequence[ray.ObjectRef[R]]) -> list[R]:
        """The results of ``refs`` (a list, in order); a task's own error is re-raised as
        itself, a lost cluster becomes :class:`EngineLost`."""
        try:
            return list(ray.get(refs))
        except ray_errors.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, Exception) and not isinstance(cause, ray_errors.RayError):
                raise cause from None
            raise self._lost(e) from None
        except (ray_errors.RayError, ConnectionError, OSError) as e:
            raise self._lost(e) from None

    def run(self, fn: Callable[..., R], arg_lists: Sequence[tuple[object, ...]]) -> list[R]:
        """``[fn(*args) for args in arg_lists]`` on the cluster, in order."""
        return self.get([self.submit(fn, *args) for args in arg_lists])

    def put(self, value: T) -> ray.ObjectRef[T]:
        """Store ``value`` once in the cluster's object store (shared by many tasks)."""
        try:
            return ray.put(value)
        except Exception as e:
            raise self._lost(e) from None

    # -- the Engine interface ----------------------------------------------------------
    def he_backend(self) -> RayBackend:
        return RayBackend(self, self._min_batch)

    def point_kernels(self, threads: int | None) -> PointKernels:
        return RayPointKernels(self)

    def map_ordered(
        self, fn: Callable[[T], R], items: Iterable[T], *, window: int | None = None
    ) -> Iterator[R]:
        return ordered_window(
            lambda item: self.submit(fn, item),
            lambda ref: self.get([ref])[0],
            items,
            window or DEFAULT_WINDOW * self._workers,
        )

    def close(self) -> None:
        """Nothing to release per engine (the connection lasts the process)."""


def _split(n: int, parts: int, least: int = 1) -> list[tuple[int, int]]:
    parts = max(1, min(parts, n // max(least, 1)))
    step = -(-n // parts) if n else 1
    return [(i, min(i + step, n)) for i in range(0, n, step)]


MIN_ROWS_PER_TASK = 4096  # KKRT: rows per task below which scheduling costs more


class RayPointKernels:
    """ECDH-PSI's kernels on the cluster: each batch cut in one chunk per worker."""

    def __init__(self, engine: RayEngine) -> None:
        self._engine = engine

    def hash_blind(self, scalar: bytes, ids: Sequence[bytes], suite: ecc.Suite) -> bytes:
        ids = list(ids)
        chunks = _split(len(ids), self._engine.workers, MIN_IDS_PER_TASK)
        args = [(scalar, ids[a:b], suite) for a, b in chunks]
        return b"".join(self._engine.run(tasks.hash_blind, args))

    def blind_truncate(self, scalar: bytes, points: bytes, nbytes: int, suite: ecc.Suite) -> bytes:
        w = ecc.POINT_BYTES
        if len(points) % w:
            ecc.split_points(points)  # raises the ProtocolError naming the length
        chunks = _split(len(points) // w, self._engine.workers, MIN_IDS_PER_TASK)
        args = [(scalar, points[a * w : b * w], nbytes, suite) for a, b in chunks]
        return b"".join(self._engine.run(tasks.blind_truncate, args))

    def split(self, n: int) -> list[tuple[int, int]]:
        return split_rows(n, self._engine.workers, MIN_ROWS_PER_TASK)

    def map_chunks(self, fn: Callable[..., R], arg_lists: Sequence[tuple[object, ...]]) -> list[R]:
        if len(arg_lists) == 1:  # one chunk: no task is worth its round trip
            return [fn(*arg_lists[0])]
        return self._engine.run(fn, arg_lists)

    def close(self) -> None:
        """Nothing held per run."""


def _combine(parts: list[list[mpz]], m: mpz) -> list[mpz]:
    out = parts[0]
    for part in parts[1:]:
        out = [x * y % m for x, y in zip(out, part, strict=True)]
    return out


class RayBackend(LocalBackend):
    """HE batches on the cluster: encryption randomisers, ``g ** m``, decryption
    powers, histogram products and ``c @ X`` go out as chunks; small batches and the
    in-process work (:meth:`table_pow`, :meth:`map_ranges`, background tasks) stay here."""

    def __init__(self, engine: RayEngine, min_batch: int | None = None) -> None:
        super().__init__(engine.workers)
        self._engine = engine
        if min_batch is not None:
            self.min_randomisers = self.min_products = self.min_powmods = min_batch

    def __repr__(self) -> str:
        return f"RayBackend({self._engine.url}, workers={self.workers})"

    def powmod_base_list(self, bases: Sequence[BigInt], k: int, m: mpz) -> list[mpz]:
        w = self.workers
        if len(bases) < self.min_powmods * w:
            return super().powmod_base_list(bases, k, m)
        bases = [mpz(b) for b in bases]
        args = [(bases[a:b], k, m) for a, b in _split(len(bases), w)]
        return [r for part in self._engine.run(tasks.powmod_list, args) for r in part]

    def random_pow(self, table: FixedBase, count: int) -> np.ndarray:
        w = self.workers
        if count < self.min_randomisers * w:
            return super().random_pow(table, count)
        spec = tuple(table.spec())
        parts = self._engine.run(tasks.random_pow, [(spec, b - a) for a, b in _split(count, w)])
        out = np.empty(count, dtype=object)
        out[:] = [r for part in parts for r in part]
        return out

    def fixed_pow(self, table: FixedBase, exps: Sequence[int]) -> np.ndarray:
        w = self.workers
        if len(exps) < self.min_randomisers * w:
            return super().fixed_pow(table, exps)
        spec, vals = tuple(table.spec()), [int(e) for e in exps]
        parts = self._engine.run(
            tasks.fixed_pow, [(spec, vals[a:b]) for a, b in _split(len(vals), w)]
        )
        out = np.empty(len(vals), dtype=object)
        out[:] = [r for part in parts for r in part]
        return out

    def group_product_columns(
        self, a: Sequence[BigInt], G: np.ndarray, n_groups: int, m: mpz
    ) -> list[mpz]:
        n, F = G.shape
        w = self.workers
        if n * F < self.min_products * w:
            return super().group_product_columns(a, G, n_groups, m)
        a = [mpz(x) for x in a]
        args: list[tuple[object, ...]]
        if w <= F:  # whole columns per task, the ciphertexts stored once
            ref = self._engine.put(a)
            args = [(ref, G[:, i:j], n_groups, m) for i, j in _split(F, w)]
            return [r for p in self._engine.run(tasks.group_products, args) for r in p]
        args = [(a[i:j], G[i:j], n_groups, m) for i, j in _split(n, w)]
        return _combine(self._engine.run(tasks.group_products, args), m)

    def multi_exp_columns(
        self, bases: Sequence[BigInt], cols: Sequence[Sequence[int]] | np.ndarray, m: mpz
    ) -> list[mpz]:
        bases = [mpz(b) for b in bases]
        n, k = len(bases), len(cols)
        w = self.workers
        if n * k < self.min_products * w:
            return super().multi_exp_columns(bases, cols, m)
        wire = np.asarray(cols) if isinstance(cols, np.ndarray) else [list(c) for c in cols]
        args: list[tuple[object, ...]]
        if w <= k:
            ref = self._engine.put(bases)
            args = [(ref, wire[i:j], m) for i, j in _split(k, w)]
            return [r for p in self._engine.run(tasks.multi_exp, args) for r in p]
        if isinstance(wire, np.ndarray):
            args = [(bases[i:j], wire[:, i:j], m) for i, j in _split(n, w)]
        else:
            args = [(bases[i:j], [c[i:j] for c in wire], m) for i, j in _split(n, w)]
        return _combine(self._engine.run(tasks.multi_exp, args), m)
