"""Fixed-base exponentiation with a precomputed table (fixed-base windowing).

For a base ``b`` used over and over (Paillier's ``h_s``, OU's ``G`` and ``H``) we store
``T[i][d] = b**(d * 2**(w*i)) mod m`` for every ``w``-bit window ``i`` of the exponent
and every digit ``d``. Then ``b**e = prod_i T[i][digit_i(e)]``: one modular product per
window and no squarings (128 products for a 1024-bit exponent with ``w = 8``, against
~1,200 for square-and-multiply). The table holds ``2**w * ceil(bits/w)`` residues
(16 MiB for a 1024-bit exponent mod a 4096-bit ``n^2`` at ``w = 8``).

Random exponents are drawn as raw bytes and split into digits with numpy, so they never
become Python ints; evaluation is vectorised over a batch with numpy object arrays of
gmpy2 ``mpz`` (one multiply and one reduction ufunc call per window).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from gmpy2 import mpz


class FixedBase:
    """Table for ``base**e mod modulus`` with ``0 <= e < 2**exp_bits``."""

    __slots__ = ("_lock", "_rows", "base", "exp_bits", "modulus", "n_windows", "window")

    def __init__(self, base: int, modulus: int, exp_bits: int, window: int = 8) -> None:
        self.base = mpz(base)
        self.modulus = mpz(modulus)
        self.window = window
        self.exp_bits = exp_bits
        self.n_windows = -(-exp_bits // window)
        self._rows: list[np.ndarray] | None = None  # built on first use (workers may be
        self._lock = threading.Lock()  # the only ones that ever need it)

    @property
    def table(self) -> list[np.ndarray]:
        """The rows ``T[i][d]``, built on first use."""
        with self._lock:
            if self._rows is None:
                rows = []
                cur = self.base % self.modulus
                for _ in range(self.n_windows):
                    row = np.empty(1 << self.window, dtype=object)
                    acc = mpz(1)
                    for d in range(1 << self.window):
                        row[d] = acc
                        acc = acc * cur % self.modulus
                    rows.append(row)
                    cur = acc  # base ** (2**w) ** (i + 1)
                self._rows = rows
            return self._rows

    def spec(self) -> tuple[Any, ...]:
        """What a worker process needs to rebuild this table (see :func:`from_spec`)."""
        return (int(self.base), int(self.modulus), self.exp_bits, self.window)

    def digits_from_bytes(self, raw: np.ndarray) -> np.ndarray:
        """Little-endian exponent bytes (count, nbytes) -> window digits (count, windows)."""
        count = raw.shape[0]
        if self.window == 8:
            return raw[:, : self.n_windows].astype(np.intp)
        bits = np.unpackbits(raw, axis=1, bitorder="little")[:, : self.exp_bits]
        pad = self.n_windows * self.window - bits.shape[1]
        if pad:
            bits = np.pad(bits, ((0, 0), (0, pad)))
        weights = (1 << np.arange(self.window)).astype(np.intp)
        return bits.reshape(count, self.n_windows, self.window).astype(np.intp) @ weights

    def pow_digits(self, digits: np.ndarray) -> np.ndarray:
        """``base**e`` for each row of window digits (count, <= n_windows)."""
        if digits.ndim != 2 or digits.shape[1] > self.n_windows:
            raise ValueError("exponent digits do not match the table")
        m = self.modulus
        if digits.shape[1] == 0:
            out = np.empty(digits.shape[0], dtype=object)
            out[:] = [mpz(1)] * digits.shape[0]
            return out
        # A fused multiply-and-reduce per element measured ~15% faster than numpy's two
        # object-array passes (the product is reduced while still in cache).
        table = self.table
        acc = table[0][digits[:, 0]].tolist()
        for i in range(1, digits.shape[1]):
            col = digits[:, i]
            if col.any():
                row = table[i][col].tolist()
                acc = [x * y % m for x, y in zip(acc, row, strict=True)]
        out = np.empty(len(acc), dtype=object)
        out[:] = acc
        return out

    def random_digits(self, count: int, urandom: bytes) -> np.ndarray:
        """Digits of ``count`` uniform ``exp_bits``-bit exponents taken from ``urandom``."""
        nb = -(-self.exp_bits // 8)
        raw = np.frombuffer(urandom, dtype=np.uint8).reshape(count, nb)
        return self.digits_from_bytes(raw)

    def pow_ints(self, exps: Sequence[int] | np.ndarray) -> np.ndarray:
        """``base**e`` for non-negative ints ``e < 2**exp_bits``."""
        nb = -(-self.exp_bits // 8)
        raw = b"".join(int(e).to_bytes(nb, "little") for e in exps)
        digits = self.digits_from_bytes(np.frombuffer(raw, dtype=np.uint8).reshape(len(exps), nb))
        used = digits.shape[1]
        while used > 0 and not digits[:, used - 1].any():
            used -= 1  # small exponents cost fewer products
        return self.pow_digits(digits[:, :used])


def from_spec(spec: tuple[Any, ...]) -> FixedBase:
    """Rebuild a table from :meth:`FixedBase.spec` (in a worker process)."""
    base, modulus, exp_bits, window = spec
    return FixedBase(base, modulus, exp_bits, window)
