"""Serial big-integer kernels: run in the caller or in a worker process (no state)."""

from __future__ import annotations

import math
from typing import Any

import gmpy2
from gmpy2 import mpz

ONE = mpz(1)


def group_product_serial(a: list[Any], groups: list[int], n_groups: int, m: mpz) -> list[Any]:
    acc: list[Any] = [ONE] * n_groups
    for c, g in zip(a, groups, strict=True):
        if g >= 0:
            acc[g] = acc[g] * c % m
    return acc


def _window(n: int, bits: int) -> int:
    best, best_cost = 1, math.inf
    for w in range(1, 17):
        cost = math.ceil(bits / w) * (n + 2 ** (w + 1))
        if cost < best_cost:
            best, best_cost = w, cost
    return best


def pippenger(bases: list[Any], exps: list[int], m: mpz) -> Any:
    """``prod bases[i] ** exps[i] mod m`` for non-negative ``exps`` (bucket method)."""
    bits = max((e.bit_length() for e in exps), default=0)
    if bits == 0:
        return ONE
    w = _window(len(bases), bits)
    mask = (1 << w) - 1
    n_win = math.ceil(bits / w)
    result = ONE
    for t in range(n_win - 1, -1, -1):
        if t != n_win - 1:
            result = gmpy2.powmod(result, 1 << w, m)
        shift = t * w
        digits = [((e >> shift) & mask) - 1 for e in exps]  # digit 0 -> skipped (-1)
        buckets = group_product_serial(bases, digits, mask, m)
        running, window_sum = ONE, ONE
        for d in range(mask - 1, -1, -1):  # bucket d holds digit d + 1
            if buckets[d] is not ONE:
                running = running * buckets[d] % m
            if running is not ONE:
                window_sum = window_sum * running % m
        result = result * window_sum % m
    return result
