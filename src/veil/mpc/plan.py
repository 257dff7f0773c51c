"""The offline plan: which correlated randomness (Beaver triples, matrix masks) a
computation will consume, in which order. Pure data, no I/O.

Both compute parties build the same :class:`Plan` from public parameters (row counts,
block widths, batch schedule) before any data value is shared, so the triples can be
produced ahead of time by a dealer (:mod:`veil.mpc.triples`) or by the two parties
under additively homomorphic encryption (:mod:`veil.mpc.he_triples`): SecureML's
offline phase (Mohassel and Zhang, IEEE S&P 2017, section IV-B).

Kinds of triple (every array is over Z_2^64; ``M`` is a registered matrix mask):
  ``mul``      a, b of shape (n,); c = a * b                      (element-wise Beaver)
  ``matmul``   A (m, k), B (k, n); C = A @ B                      (matrix Beaver)
  ``masked``   b (w, n); C = M[rows] @ b                          (X @ W with X masked once)
  ``masked_t`` b (r, n); C = M[rows].T @ b                        (X.T @ D likewise)
  ``cross``    C = M1[rows].T @ M2[rows]                          (Gram block of two masks)
A *mask* ``M`` (rows x width) hides a fixed matrix ``X`` as ``E = X - M``, opened once
and reused by every product with ``X`` (SecureML's reuse of the masked data matrix).
Its column blocks each have an owner: party 0 or 1 (that party holds the whole mask
block, the other a zero share: fit for a block of that party's own data), or
:data:`SHARED` (both hold random shares: for data neither compute party owns).
What the plan reveals: shapes, row subsets (batch membership of row positions) and
the number of steps; never a data value.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError, ProtocolError
from veil.mpc.channel import expect_field, expect_int

__all__ = ["SHARED", "Kind", "MaskSpec", "Plan", "Spec"]

SHARED = -1
"""Owner of a mask block that both compute parties hold random shares of."""

MAX_WORDS = 1 << 31  # refuse plans asking for more correlated randomness than this


class Kind(StrEnum):
    """What a triple is for (see the module docstring)."""

    MUL = "mul"
    MATMUL = "matmul"
    MASKED = "masked"
    MASKED_T = "masked_t"
    CROSS = "cross"


@dataclass(frozen=True)
class MaskSpec:
    """A matrix mask: ``rows`` x sum of block widths; ``blocks`` = ((width, owner), ...)."""

    rows: int
    blocks: tuple[tuple[int, int], ...]

    @property
    def width(self) -> int:
        return sum(w for w, _ in self.blocks)

    def columns_of(self, party: int) -> npt.NDArray[np.int64]:
        """Columns whose mask share ``party`` holds (its own blocks and shared ones)."""
        cols: list[int] = []
        start = 0
        for w, owner in self.blocks:
            if owner in (party, SHARED):
                cols.extend(range(start, start + w))
            start += w
        return np.asarray(cols, dtype=np.int64)


@dataclass(frozen=True)
class Spec:
    """One triple of the plan. ``dims``: (n,) for mul, (m, k, n) for matmul, (n,) columns
    of ``b`` for masked / masked_t, () for cross (``rowset`` -1: every row)."""

    kind: Kind
    dims: tuple[int, ...]
    mask: str = ""
    rowset: int = -1
    other: str = ""


@dataclass
class Plan:
    """Masks, row subsets and the triples of each phase, in consumption order."""

    masks: dict[str, MaskSpec] = field(default_factory=dict)
    rowsets: list[npt.NDArray[np.int64]] = field(default_factory=list)
    phases: list[list[Spec]] = field(default_factory=lambda: [[]])

    # -- building ----------------------------------------------------------------
    def add_mask(self, key: str, rows: int, blocks: list[tuple[int, int]]) -> str:
        if key in self.masks:
            raise ConfigError("plan.mask", f"mask '{key}' is registered twice")
        if rows < 1 or not blocks or any(w < 1 or o not in (0, 1, SHARED) for w, o in blocks):
            raise ConfigError("plan.mask", f"mask '{key}' has bad shape {rows} x {blocks}")
        self.masks[key] = MaskSpec(int(rows), tuple((int(w), int(o)) for w, o in blocks))
        return key

    def add_rowset(self, rows: npt.ArrayLike) -> int:
        self.rowsets.append(np.asarray(rows, dtype=np.int64))
        return len(self.rowsets) - 1

    def new_phase(self) -> None:
        """Start a new phase (a dealer sends one message of corrections per phase)."""
        if self.phases[-1]:
            self.phases.append([])

    def add(self, spec: Spec) -> Spec:
        self.shapes(spec)  # validates
        self.phases[-1].append(spec)
        return spec

    def mul(self, n: int) -> Spec:
        return self.add(Spec(Kind.MUL, (int(n),)))

    def matmul(self, m: int, k: int, n: int) -> Spec:
        return self.add(Spec(Kind.MATMUL, (int(m), int(k), int(n))))

    def masked(self, mask: str, rowset: int, ncols: int = 1) -> Spec:
        return self.add(Spec(Kind.MASKED, (int(ncols),), mask, int(rowset)))

    def masked_t(self, mask: str, rowset: int, ncols: int = 1) -> Spec:
        return self.add(Spec(Kind.MASKED_T, (int(ncols),), mask, int(rowset)))

    def cross(self, mask: str, other: str, rowset: int = -1) -> Spec:
        return self.add(Spec(Kind.CROSS, (), mask, int(rowset), other))

    # -- shapes ------------------------------------------------------------------
    def rows_of(self, spec: Spec) -> npt.NDArray[np.int64] | slice:
        """The spec's row subset (every row for a cross triple with rowset -1)."""
        if spec.kind is Kind.CROSS and spec.rowset < 0:
            return slice(None)
        return self.rowsets[spec.rowset]

    def shapes(self, spec: Spec) -> dict[str, tuple[int, ...]]:
        """Shapes of the triple's parts ``a``/``b``/``c`` (masked kinds have no ``a``)."""
        d = spec.dims
        if spec.kind is Kind.MUL and len(d) == 1 and d[0] >= 0:
            return {"a": d, "b": d, "c": d}
        if spec.kind is Kind.MATMUL and len(d) == 3 and min(d) >= 0:
            return {"a": (d[0], d[1]), "b": (d[1], d[2]), "c": (d[0], d[2])}
        if spec.kind in (Kind.MASKED, Kind.MASKED_T) and len(d) == 1 and d[0] >= 0:
            m = self._mask(spec.mask)
            r = self._rows_in(spec.rowset, m.rows)
            if spec.kind is Kind.MASKED:
                return {"b": (m.width, d[0]), "c": (r, d[0])}
            return {"b": (r, d[0]), "c": (m.width, d[0])}
        if spec.kind is Kind.CROSS and d == ():
            m1, m2 = self._mask(spec.mask), self._mask(spec.other)
            if m1.rows != m2.rows:
                raise ConfigError("plan.cross", "the two masks have different row counts")
            if spec.rowset != -1:
                self._rows_in(spec.rowset, m1.rows)
            return {"c": (m1.width, m2.width)}
        raise ConfigError("plan", f"malformed triple {spec}")

    def _rows_in(self, rowset: int, n: int) -> int:
        if not 0 <= rowset < len(self.rowsets):
            raise ConfigError("plan.rowset", f"no row subset {rowset}")
        rows = self.rowsets[rowset]
        if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= n)):
            raise ConfigError("plan.rowset", f"row subset {rowset} is out of range")
        return len(rows)

    def _mask(self, key: str) -> MaskSpec:
        try:
            return self.masks[key]
        except KeyError:
            raise ConfigError("plan.mask", f"no mask '{key}'") from None

    def flat(self) -> list[tuple[int, Spec]]:
        """``(phase, spec)`` of every triple in consumption order."""
        return [(p, s) for p, specs in enumerate(self.phases) for s in specs]

    def words(self) -> int:
        """Words of correlated randomness the plan asks for (masks and triples)."""
        total = sum(m.rows * m.width for m in self.masks.values())
        for _, s in self.flat():
            total += sum(int(np.prod(v)) for v in self.shapes(s).values())
        return total

    # -- wire --------------------------------------------------------------------
    def to_wire(self) -> dict[str, object]:
        return {
            "masks": {
                k: {"rows": m.rows, "blocks": [list(b) for b in m.blocks]}
                for k, m in self.masks.items()
            },
            "rowsets": list(self.rowsets),
            "phases": [
                [[str(s.kind), list(s.dims), s.mask, s.rowset, s.other] for s in ph]
                for ph in self.phases
            ],
        }

    def digest(self) -> str:
        """SHA-256 over the plan, to check that every party consumes the same one."""
        h = hashlib.sha256()
        w = self.to_wire()
        h.update(json.dumps([w["masks"], w["phases"]], sort_keys=True).encode())
        for r in self.rowsets:
            h.update(np.ascontiguousarray(r, dtype="<i8").tobytes() + b"|")
        return h.hexdigest()

    @classmethod
    def from_wire(cls, msg: object, tag: str) -> Plan:
        """Rebuild a plan a peer sent; ProtocolError naming the field if malformed."""
        plan = cls()
        masks = expect_field(msg, tag, "masks")
        rowsets = expect_field(msg, tag, "rowsets")
        phases = expect_field(msg, tag, "phases")
        if not isinstance(masks, dict) or not isinstance(rowsets, list):
            raise ProtocolError(f"{tag}.masks: malformed")
        if not isinstance(phases, list) or not phases:
            raise ProtocolError(f"{tag}.phases: malformed")
        try:
            for k, m in masks.items():
                rows = expect_int(expect_field(m, tag, "rows"), tag, "masks.rows", 1)
                blocks = expect_field(m, tag, "blocks")
                if not isinstance(blocks, list | tuple):
                    raise TypeError(f"blocks is a {type(blocks).__name__}, not a list")
                plan.add_mask(k, rows, [(int(w), int(o)) for w, o in blocks])
            for r in rowsets:
                if not isinstance(r, np.ndarray) or r.dtype.kind != "i" or r.ndim != 1:
                    raise ProtocolError(f"{tag}.rowsets: expected 1-D integer arrays")
                plan.add_rowset(r)
            plan.phases = []
            for ph in phases:
                specs = []
                for kind, dims, mask, rowset, other in ph:
                    spec = Spec(Kind(kind), tuple(int(x) for x in dims), mask, int(rowset), other)
                    plan.shapes(spec)
                    specs.append(spec)
                plan.phases.append(specs)
        except (ConfigError, TypeError, ValueError) as e:
            raise ProtocolError(f"{tag}.phases: malformed plan ({e})") from None
        if plan.words() > MAX_WORDS:
            raise ProtocolError(f"{tag}.phases: plan asks for {plan.words()} words (too many)")
        return plan
