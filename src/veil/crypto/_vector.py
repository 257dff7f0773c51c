"""Vector kernels over ciphertexts (numpy object arrays of gmpy2 ``mpz``), scheme-agnostic.

Everything here is modular arithmetic in the ciphertext group: products add plaintexts,
powers multiply them. The hot paths are :func:`group_product_columns` (SecureBoost histograms)
and :func:`multi_exp` (the hetero-LR gradient ``X^T d``), the latter with Pippenger's
bucket method: per exponent window, ciphertexts are multiplied into 2**w buckets by their
digit, and the buckets are combined with two running products, so a column of ``n``
``b``-bit exponents costs about ``(b/w) * (n + 2**(w+1))`` products instead of ``n * 1.2b``.
Large batches are spread over cores (or machines) by the key's
:class:`~veil.crypto.backend.HEBackend`, passed in as ``be``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from veil.crypto import _kernels as kern
from veil.errors import ProtocolError

if TYPE_CHECKING:
    from veil.crypto.backend import HEBackend

ONE = mpz(1)


def _obj(values: Any) -> np.ndarray:
    return kern.objects(list(values))


def mulmod(be: HEBackend, a: np.ndarray, b: np.ndarray, m: mpz) -> np.ndarray:
    """Element-wise ``a * b mod m`` (broadcasting like numpy)."""
    if a.shape != b.shape:
        a, b = np.broadcast_arrays(a, b)
    return _obj(be.mulmod_list(a.ravel().tolist(), b.ravel().tolist(), m)).reshape(a.shape)


def invert(a: np.ndarray, m: mpz) -> np.ndarray:
    flat = [gmpy2.invert(v, m) for v in a.ravel()]
    return _obj(flat).reshape(a.shape)


def pow_scalar(be: HEBackend, a: np.ndarray, k: int, m: mpz) -> np.ndarray:
    """Element-wise ``a ** k mod m`` for one (possibly negative) exponent."""
    flat = a.ravel()
    if k == 1:
        return a.copy()
    if k == 0:
        return _obj([ONE] * flat.size).reshape(a.shape)
    if k < 0:
        flat = invert(flat, m)
        k = -k
    return _obj(be.powmod_base_list(list(flat), k, m)).reshape(a.shape)


def pow_elementwise(a: np.ndarray, ks: np.ndarray, m: mpz) -> np.ndarray:
    """``a[i] ** ks[i] mod m`` (1-D, exponents may be negative)."""
    return _obj([gmpy2.powmod(x, int(k), m) for x, k in zip(a, ks, strict=True)])


def product(be: HEBackend, a: np.ndarray, m: mpz) -> np.ndarray:
    """Product of a 1-D array mod ``m`` as a 1-element array (1 if empty)."""
    return _obj(be.group_product_columns(a.tolist(), np.zeros((a.size, 1), np.int64), 1, m))


def group_product_columns(
    be: HEBackend, a: np.ndarray, G: np.ndarray, n_groups: int, m: mpz
) -> np.ndarray:
    """``out[f * n_groups + g] = prod a[i] for G[i, f] == g`` mod ``m``; ``G < 0`` skipped."""
    return _obj(be.group_product_columns(a.tolist(), G, n_groups, m))


def multi_exp(be: HEBackend, a: np.ndarray, K: np.ndarray, m: mpz) -> np.ndarray:
    """``out[j] = prod_i a[i] ** K[i, j] mod m`` (``K`` signed ints, shape (n, k))."""
    if K.dtype == np.int64 and (K.size == 0 or int(np.abs(K).max()) < 1 << 62):
        return _obj(be.multi_exp_columns(list(a), np.ascontiguousarray(K.T), m))
    cols = [[int(v) for v in K[:, j]] for j in range(K.shape[1])]
    return _obj(be.multi_exp_columns(list(a), cols, m))


def from_ints(values: Any, m: mpz) -> np.ndarray:
    """Ciphertexts received from a peer: each must lie in ``[1, m)``."""
    out = [mpz(v) for v in values]
    for v in out:
        if not 0 < v < m:
            raise ProtocolError("ciphertext out of range for this key")
    return _obj(out)
