"""Many multi-exponentiations over the same few bases: ``out[i] = prod_j b_j ** E[i, j]``.

The HE products of :mod:`veil.mpc.he_triples` multiply a short column of ciphertexts
(``k``: a Gram matrix's width, tens) by every row of a matrix of 64-bit words.
Pippenger's bucket method (:meth:`veil.crypto.backend.HEBackend.multi_exp_columns`)
amortises over a long column, not over the rows: for ``k = 24`` it costs about 40
modular products per 64-bit exponent. Straus's simultaneous method with one window table
per base (Straus, "Addition chains of vectors", 1964), the tables shared by every row,
costs ``k (2^w - 2)`` products once, then per row ``ceil(b/w) (k + w)``: about 15 per
exponent at ``k = 24``. Each window's products of all rows are one
``group_product_columns`` call and its squarings one ``powmod_base_list``, so both run on
the key's HE backend (every core, the GIL released in the C kernel).

Pure arithmetic on public values and ciphertexts: no I/O, nothing learnt.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from veil.crypto.backend import HEBackend
from veil.crypto.kernels import BigInt, mpz

__all__ = ["pippenger_cost", "shared_base_multi_exp", "straus_cost"]


def straus_cost(k: int, rows: int, bits: int) -> tuple[float, int]:
    """(modular products, window) of :func:`shared_base_multi_exp` at its best window."""
    best = (math.inf, 1)
    for w in range(1, 11):
        cost = k * ((1 << w) - 2) + rows * math.ceil(bits / w) * (k + w)
        best = min(best, (float(cost), w))
    return best


def pippenger_cost(k: int, rows: int, bits: int) -> float:
    """Modular products of ``rows`` bucket-method multi-exponentiations of ``k`` terms."""
    return rows * min(math.ceil(bits / w) * (k + (1 << (w + 1))) for w in range(1, 17))


def shared_base_multi_exp(
    be: HEBackend, columns: list[list[BigInt]], E: npt.NDArray[np.uint64], m: mpz
) -> list[list[mpz]]:
    """For each column of bases ``b`` (each ``k`` long), ``[prod_j b[j] ** E[i, j] mod m
    for each row i]``; ``E`` is a (rows, k) array of unsigned 64-bit exponents (ring
    words). All columns' work goes through the backend together."""
    E = np.ascontiguousarray(E, dtype=np.uint64)
    rows, k = E.shape
    if any(len(c) != k for c in columns):
        raise ValueError(f"{k} exponent columns for bases of another length")
    if rows == 0 or not columns:
        return [[] for _ in columns]
    n_cols = len(columns)
    bits = max(1, int(E.max()).bit_length())
    _, w = straus_cost(k * n_cols, rows * n_cols, bits)
    size = 1 << w
    # table[(c * k + j) * size + d] = columns[c][j] ** d (d = 0 unused)
    flat_bases = [mpz(b) for col in columns for b in col]
    table = np.empty(len(flat_bases) * size, dtype=object)
    cur = flat_bases
    table[1::size] = cur
    for d in range(2, size):
        cur = be.mulmod_list(cur, flat_bases, m)
        table[d::size] = cur
    base_idx = (np.arange(n_cols)[:, None, None] * k + np.arange(k)[None, None, :]) * size
    group = np.arange(n_cols)[:, None, None] * rows + np.arange(rows)[None, :, None]
    group = np.broadcast_to(group, (n_cols, rows, k)).ravel()
    out: list[mpz] | None = None
    for t in range(math.ceil(bits / w) - 1, -1, -1):
        digits = ((E >> np.uint64(t * w)) & np.uint64(size - 1)).astype(np.int64)
        d3 = np.broadcast_to(digits[None, :, :], (n_cols, rows, k))
        live = d3.ravel() != 0
        flat = (d3 + base_idx).ravel()[live]
        entries = table[flat].tolist()
        prods = be.group_product_columns(entries, group[live].reshape(-1, 1), n_cols * rows, m)
        out = prods if out is None else be.mulmod_list(be.powmod_base_list(out, size, m), prods, m)
    assert out is not None
    return [out[c * rows : (c + 1) * rows] for c in range(n_cols)]
