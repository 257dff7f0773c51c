"""Who runs the HE engine's big batches: an explicit backend object, never a global at import.

Every public key carries a backend (``pk.backend``) and every operation on its keys and
:class:`~veil.crypto.encrypted.EncryptedArray` runs its batches there::

    from veil.crypto.backend import LocalBackend
    with LocalBackend(workers=4) as backend:           # this machine, 4 cores
        pk, sk = paillier.generate_keypair(2048, backend=backend)
        peer_pk = public_key_from_wire(wire, backend=backend)
        ...                                             # batches use at most 4 cores
    # leaving the block stops its threads and worker processes

A key made without one (``backend=None``) uses :func:`default_backend` at the time of
each operation: one :class:`LocalBackend` per process, made on first use (not at import)
with ``VEIL_HE_WORKERS`` cores if that variable is set, else all cores, and closed at
interpreter exit. :func:`set_default_backend` replaces it (the job runner, a benchmark).

:class:`HEBackend` is the whole interface: a scale-out engine (e.g. Ray) implements it,
typically by subclassing :class:`LocalBackend` and sending the chunks of the batch
methods (``random_pow``, ``fixed_pow``, ``powmod_base_list``, ``group_product_columns``,
``multi_exp_columns``) to remote workers that run the serial kernels of
:mod:`veil.crypto.kernels` (a :class:`~veil.crypto.kernels.FixedBase` travels as its
``spec()`` and is rebuilt with ``from_spec``). ``map_ranges``, ``table_pow``,
``background`` and ``concurrently`` run closures over in-process tables: keep them local.

Importing this module starts no thread or process and registers nothing.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
from gmpy2 import mpz

from veil.crypto._fixedbase import FixedBase
from veil.crypto._parallel import WORKERS_ENV, LocalBackend, check_workers
from veil.crypto.kernels import BigInt
from veil.errors import ConfigError

__all__ = [
    "WORKERS_ENV",
    "HEBackend",
    "LocalBackend",
    "default_backend",
    "set_default_backend",
]

T = TypeVar("T")


@runtime_checkable
class HEBackend(Protocol):
    """What the HE engine asks of whoever runs its batches (see the module docstring).

    Ciphertexts are gmpy2 ``mpz`` residues mod ``m``; results come back in input order.
    """

    @property
    def workers(self) -> int:
        """Degree of parallelism (1: everything in the calling thread)."""
        ...

    def powmod_base_list(self, bases: Sequence[BigInt], k: int, m: mpz) -> list[mpz]:
        """``[b ** k mod m for b in bases]`` (decryption, ``c * scalar``, packing)."""
        ...

    def mulmod_list(self, a: Sequence[BigInt], b: Sequence[BigInt], m: mpz) -> list[mpz]:
        """``[a[i] * b[i] mod m]`` (ciphertext + ciphertext)."""
        ...

    def group_product_columns(
        self, a: Sequence[BigInt], G: np.ndarray, n_groups: int, m: mpz
    ) -> list[mpz]:
        """For each column ``f`` of ``G`` (n, F) and group ``g < n_groups``, the product of
        ``a[i]`` with ``G[i, f] == g`` (negative entries skipped, empty groups 1),
        concatenated by column (histograms, sums)."""
        ...

    def multi_exp_columns(
        self, bases: Sequence[BigInt], cols: Sequence[Sequence[int]] | np.ndarray, m: mpz
    ) -> list[mpz]:
        """``[prod_i bases[i] ** col[i] mod m for col in cols]``, signed exponents (``c @ X``)."""
        ...

    def random_pow(self, table: FixedBase, count: int) -> np.ndarray:
        """``count`` values ``base ** r`` for fresh uniform ``table.exp_bits``-bit ``r``
        (encryption randomisers), as an object array."""
        ...

    def fixed_pow(self, table: FixedBase, exps: Sequence[int]) -> np.ndarray:
        """``base ** e`` for non-negative ``e < 2**table.exp_bits``, as an object array."""
        ...

    def table_pow(
        self, table: FixedBase, digits: np.ndarray, start: np.ndarray | None = None
    ) -> np.ndarray:
        """``table.pow_digits(digits, start)``, possibly split by rows."""
        ...

    def map_ranges(self, fn: Callable[[int, int], np.ndarray], count: int) -> np.ndarray:
        """``fn(0, count)``, possibly computed as ``fn(a, b)`` over slices and concatenated."""
        ...

    def background(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """Run ``fn(*args)`` in the background, one such task at a time (pool filling)."""
        ...

    def concurrently(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """Run ``fn(*args)`` now, beside the caller (never queued behind background work)."""
        ...

    def warm_up(self) -> None:
        """Start whatever the first big batch would otherwise wait for."""
        ...

    def close(self) -> None:
        """Release threads, processes and connections."""
        ...


class _Default:
    """The process default: who made it (then this module closes it) and the exit hook."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.backend: HEBackend | None = None
        self.owned = False
        self.exit_hook = False

    def install(self, backend: HEBackend, *, owned: bool) -> None:
        """Make ``backend`` the default (call under ``lock``); close the old one if ours."""
        old, old_owned = self.backend, self.owned
        self.backend, self.owned = backend, owned
        if owned and not self.exit_hook:  # registered with the first backend, not at import
            atexit.register(self.close)
            self.exit_hook = True
        if old is not None and old_owned and old is not backend:
            old.close()

    def close(self) -> None:
        if self.backend is not None and self.owned:
            self.backend.close()


_state = _Default()


def default_backend() -> HEBackend:
    """The backend of keys made without one: made on first use (``VEIL_HE_WORKERS`` cores
    if set, else all), closed at interpreter exit."""
    backend = _state.backend
    if backend is None:
        with _state.lock:
            if _state.backend is None:
                _state.install(LocalBackend.from_env(), owned=True)
            backend = _state.backend
    assert backend is not None
    return backend


def set_default_backend(backend: HEBackend) -> None:
    """Make ``backend`` the default of keys made without one. The previous default is
    closed if this module made it; a backend the caller made stays the caller's to close."""
    if not isinstance(backend, HEBackend):
        raise ConfigError(
            "backend", f"{type(backend).__name__} is not an HEBackend", "pass a LocalBackend"
        )
    with _state.lock:
        _state.install(backend, owned=False)


def set_default_workers(n: int) -> None:
    """Replace the default with a :class:`LocalBackend` of ``n`` cores (made and closed
    by this module)."""
    check_workers(n)
    with _state.lock:
        _state.install(LocalBackend(n), owned=True)
