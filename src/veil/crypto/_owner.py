"""Key-owner encryption through the Chinese remainder theorem.

The party that holds a secret key usually encrypts too (the label holder encrypts its
gradients under its own key). It knows the factors of the ciphertext modulus -- ``p**2``
and ``q`` for OU (``n = p**2 q``), ``p**2`` and ``q**2`` for Paillier (``n**2``) -- so it can
run every fixed-base chain modulo each factor and join the two results (Garner's
formula). Products of half- or third-size numbers cost a quarter to a ninth as much, so
the owner's encryptions come out about 1.3x (OU) to 1.5x (Paillier) cheaper, as measured
in `benchmarks/RESULTS.md` (HE runs 9-11). The
ciphertexts are the same numbers the public-key path makes: same distribution, same
security; only the arithmetic differs.

The factors stay in this process: a :class:`CRTTables` is attached to the public key
object that was made together with its secret key, and nothing here is ever serialised
(``to_wire`` sends the public fields only). Needs the C kernel; without it the owner uses
the public-key path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from veil.crypto._fixedbase import FixedBase
from veil.crypto._kernels import objects
from veil.crypto._native import kernel


class CRTTables:
    """Fixed-base tables modulo the two coprime factors ``m1``, ``m2`` of a ciphertext
    modulus, one pair per named base (``bases[name] = (base, exp_bits, window)``), their
    rows built on ``build_threads`` threads."""

    def __init__(
        self,
        m1: Any,
        m2: Any,
        bases: dict[str, tuple[Any, int, int]],
        build_threads: int = 1,
    ) -> None:
        self.m1, self.m2 = mpz(m1), mpz(m2)
        self.modulus = self.m1 * self.m2
        self._m2_inv = gmpy2.invert(self.m2, self.m1)
        self._tables = {
            name: tuple(
                FixedBase(mpz(b) % m, m, bits, w, build_threads) for m in (self.m1, self.m2)
            )
            for name, (b, bits, w) in bases.items()
        }

    def __repr__(self) -> str:
        return "<CRTTables>"  # never the factors

    def usable(self) -> bool:
        """Whether this process runs the C kernel (the tables are built by it)."""
        return kernel() is not None

    def table(self, name: str) -> FixedBase:
        """The table mod ``m1`` (its digits fit the ``m2`` table too)."""
        return self._tables[name][0]

    def chain(
        self,
        parts: Sequence[tuple[str, np.ndarray]],
        start: Sequence[Any] | np.ndarray | None = None,
    ) -> np.ndarray:
        """``start[i] * prod_parts base**e_i mod m1 m2``, each part's exponents given as its
        table's window digits (count, windows); one C chain per factor, then Garner."""
        k = kernel()
        assert k is not None, "CRTTables needs the C kernel"
        digits = np.ascontiguousarray(np.hstack([d for _, d in parts]), dtype=np.int64)
        if digits.shape[1] == 0:  # every exponent 0
            m = self.modulus
            return objects([mpz(1)] * len(digits) if start is None else [mpz(s) % m for s in start])
        halves = []
        for i, m in enumerate((self.m1, self.m2)):
            rows: list[bytes] = []
            for name, d in parts:
                rows += self._tables[name][i].mont_rows(d.shape[1])
            if start is None:  # the first column's entry starts the chain (its row 0 as is)
                lead = self._tables[parts[0][0]][i]
                first = lead.mont_first() if parts[0][1].shape[1] else None
                halves.append(k.mont_chain(m, rows, digits, None, first))
            else:
                halves.append(k.mont_chain(m, rows, digits, [mpz(s) for s in start]))
        return objects(k.crt_join(halves[0], halves[1], self.m1, self.m2, self._m2_inv))
