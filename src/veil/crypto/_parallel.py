"""Spreading big-integer batches over cores (serial placeholder; see set_workers)."""

from __future__ import annotations

from typing import Any

import gmpy2
import numpy as np

from veil.crypto import _kernels as kern
from veil.crypto._fixedbase import FixedBase

_STATE = {"workers": 1}


def get_workers() -> int:
    return _STATE["workers"]


def set_workers(n: int) -> None:
    _STATE["workers"] = max(1, int(n))


def powmod_base_list(bases: list[Any], k: int, m: Any) -> list[Any]:
    return list(gmpy2.powmod_base_list(bases, k, m))


def group_product(a: list[Any], groups: list[int], n_groups: int, m: Any) -> list[Any]:
    return kern.group_product_serial(a, groups, n_groups, m)


def multi_exp_columns(jobs: list[tuple[list[Any], list[int]]], m: Any) -> list[Any]:
    return [kern.pippenger(b, e, m) for b, e in jobs]


def fixed_base_pow(table: FixedBase, digits: np.ndarray) -> np.ndarray:
    return table.pow_digits(digits)
