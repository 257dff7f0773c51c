"""The serial kernels a remote worker runs on one chunk (module-level, importable
without Ray). Each is the same function the local engine runs, so the results are the
same bytes wherever they run."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz

from veil.crypto import ecc
from veil.crypto import kernels as kern
from veil.protocols.psi import kernels as psi_kernels


def call(fn: Callable[..., object], *args: object) -> object:
    """``fn(*args)``: runs a callable that is not a plain function (a ``partial``)."""
    return fn(*args)


def hash_blind(scalar: bytes, ids: Sequence[bytes], suite: ecc.Suite) -> bytes:
    """ECDH-PSI: ``[k]H(id)`` for a chunk of ids, concatenated."""
    return psi_kernels.hash_blind(scalar, ids, suite)


def blind_truncate(scalar: bytes, points: bytes, nbytes: int, suite: ecc.Suite) -> bytes:
    """ECDH-PSI: ``[k]P`` for a chunk of peer points, truncated, concatenated."""
    return psi_kernels.blind_truncate(scalar, points, nbytes, suite)


@functools.lru_cache(maxsize=8)
def _table(spec: tuple[object, ...]) -> kern.FixedBase:
    """A fixed-base table, built once per worker process and spec."""
    return kern.from_spec(spec)


def random_pow(spec: tuple[object, ...], count: int) -> list[mpz]:
    """HE encryption randomisers: ``base ** r`` for ``count`` fresh ``r``."""
    table = _table(spec)
    return list(table.pow_digits(table.random_digits(count)))


def fixed_pow(spec: tuple[object, ...], exps: list[int]) -> list[mpz]:
    """``base ** e`` for each exponent (plaintext encoding, ``g ** m``)."""
    return list(_table(spec).pow_ints(exps))


def powmod_list(bases: list[mpz], k: int, m: mpz) -> list[mpz]:
    """HE decryption and ``c * scalar``: ``b ** k mod m``."""
    return list(gmpy2.powmod_base_list(bases, k, m))


def group_products(a: list[mpz], G: np.ndarray, n_groups: int, m: mpz) -> list[mpz]:
    """SecureBoost histograms: per-group ciphertext products of each column of ``G``."""
    return kern.group_product_columns(a, G, n_groups, m)


def multi_exp(bases: list[mpz], cols: list[list[int]] | np.ndarray, m: mpz) -> list[mpz]:
    """``prod b[i] ** c[i]`` for each column (signed exponents): ``c @ X``."""
    return [kern.signed_multi_exp(bases, c, m) for c in cols]
