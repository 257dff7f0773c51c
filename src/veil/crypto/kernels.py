"""The serial big-integer kernels of the HE engine, public for code built on it.

Ciphertexts are gmpy2 ``mpz`` residues; batches are lists of them or 1-D numpy object
arrays. These functions run in the calling thread (the C kernel where it is built and
trusted, see :func:`native_status`; else Python loops with the same results). An
:class:`~veil.crypto.backend.HEBackend` spreads the same work over cores or machines:
a backend that runs elsewhere (e.g. a Ray cluster) calls these on each chunk.

- :func:`objects`: a 1-D object array of big integers (fast: no per-element probing);
- :func:`mulmod_list`: element-wise ``a[i] * b[i] mod m`` (ciphertext + ciphertext);
- :func:`group_product_columns`: per-group products (histograms of ciphertexts);
- :func:`signed_multi_exp`: ``prod b[i] ** e[i] mod m`` with signed exponents;
- :class:`FixedBase`: fixed-base exponentiation tables (randomisers, ``g**m``).
"""

from __future__ import annotations

from typing import TypeAlias

from gmpy2 import mpz

from veil.crypto._fixedbase import FixedBase, from_spec
from veil.crypto._kernels import group_product_columns, mulmod_list, objects, signed_multi_exp
from veil.crypto._native import status as native_status

__all__ = [
    "BigInt",
    "FixedBase",
    "from_spec",
    "group_product_columns",
    "mpz",
    "mulmod_list",
    "native_status",
    "objects",
    "signed_multi_exp",
]

BigInt: TypeAlias = "int | mpz"
"""A ciphertext or modulus: a Python int or a gmpy2 ``mpz``."""
