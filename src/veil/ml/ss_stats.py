"""Column statistics over the joined rows of every party: per-column summaries, the
Pearson correlation matrix across all parties' columns, and VIF per column.

Rows are aligned (PSI) so every party holds the same rows in the same order, each its
own columns. Papers: the cross-party correlation blocks are Gram matrices of
standardised columns computed on additive shares over Z_2^64 with one masked matrix
per party and one Beaver "cross" triple per pair (SecureML, Mohassel and Zhang, IEEE
S&P 2017; Beaver, CRYPTO 1991), from a dealer or made under HE (:mod:`veil.mpc`).

Flow (data parties in job order; the first one coordinates):
  1. each -> coordinator  ``stats_hello``: row count, id digest, column names, options
     digest; coordinator -> each  ``stats_start``: every party's column names (or the
     error that stops the run).
  2. each party computes its own columns' summaries locally: non-missing count, mean,
     sample variance (ddof 1), quantiles (numpy's linear interpolation); and, for the
     correlation, standardises its columns (z = (x - mean) / std, ddof 0, so that
     sum z^2 = n) and its own block ``Z_p^T Z_p / n``.
  3. per pair of data parties (a, b), in job order: a 2PC between a and b opens
     ``Z_a - M_a`` to b and ``Z_b - M_b`` to a (M uniform masks) and yields shares of
     ``Z_a^T Z_b``; both send their shares to each party that learns the correlation.
     Fixed point with ``f = min(24, (62 - log2 n) / 2)`` fraction bits: |sum z_a z_b| <= n
     (Cauchy-Schwarz) keeps the exact ring result below 2^62, no truncation is needed.
  4. ``stats_summary`` and ``stats_block`` carry a party's own summaries / own block to
     the parties that may learn them; a party that learns the correlation computes
     VIF_j = [R^-1]_jj, and the first of them sends VIF (``stats_vif``) to parties that
     learn VIF but not the correlation.

What each party learns: its own columns' summaries always; the row count and every
party's column names; beyond that exactly what ``reveal_to`` grants it: ``summary``
(count, mean, variance, quantiles of every party's columns), ``correlation`` (the full
Pearson matrix, hence also VIF), ``vif`` (VIF per column). In the 2PC a party sees only
uniform words (the other's masked block). The dealer learns the row count and the
block widths. Nothing else crosses the wire.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from veil.errors import ConfigError, ProtocolError
from veil.mpc import triples
from veil.mpc.channel import expect_field
from veil.mpc.engine import Engine, receive_output
from veil.mpc.he_triples import he_store
from veil.mpc.plan import Plan
from veil.mpc.ring import FixedPoint
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy

__all__ = ["STATS", "StatsOptions", "StatsResult", "Tag", "run_dealer", "run_party"]

STATS = ("summary", "correlation", "vif")


class Tag(StrEnum):
    """Messages of the statistics protocol (the 2PC adds those of :mod:`veil.mpc`)."""

    HELLO = "stats_hello"
    START = "stats_start"
    SUMMARY = "stats_summary"
    BLOCK = "stats_block"
    VIF = "stats_vif"


@dataclass(frozen=True)
class StatsOptions:
    """``reveal_to``: party -> statistics it learns (of :data:`STATS`); ``parties``: the
    data parties (job order); ``dealer``: the triple dealer, or None for HE triples."""

    parties: tuple[str, ...]
    reveal_to: Mapping[str, tuple[str, ...]]
    quantiles: tuple[float, ...] = (0.25, 0.5, 0.75)
    dealer: str | None = None
    he: str = "ou"
    key_bits: int = 2048

    def __post_init__(self) -> None:
        if len(self.parties) < 2:
            raise ConfigError("stats.parties", "needs at least two data parties")
        if self.dealer is not None and self.dealer in self.parties:
            raise ConfigError(
                "stats.dealer", f"'{self.dealer}' is also a data party", "name a third party"
            )
        for p, what in self.reveal_to.items():
            if p == self.dealer:
                raise ConfigError("stats.reveal_to", f"the dealer '{p}' learns no statistics")
            if p not in self.parties:
                raise ConfigError("stats.reveal_to", f"'{p}' is not a data party of the step")
            for w in what:
                if w not in STATS:
                    raise ConfigError(f"stats.reveal_to.{p}", f"unknown '{w}'", f"use {STATS}")
        if self.learners("vif") and not self.learners("correlation"):
            raise ConfigError(
                "stats.reveal_to",
                "VIF is computed from the correlation matrix",
                "reveal 'correlation' to at least one party (it computes VIF for the others)",
            )
        if not all(0.0 <= q <= 1.0 for q in self.quantiles):
            raise ConfigError("stats.quantiles", f"{self.quantiles} not in [0, 1]", "e.g. 0.5")

    def learners(self, what: str) -> list[str]:
        """Data parties that learn ``what``, in job order."""
        return [p for p in self.parties if what in self.reveal_to.get(p, ())]

    def digest(self) -> str:
        body: list[Any] = [list(self.parties)]
        body.append({k: list(v) for k, v in sorted(self.reveal_to.items())})
        body += [list(self.quantiles), self.dealer, self.he, self.key_bits]
        return hashlib.sha256(json.dumps(body).encode()).hexdigest()[:16]


@dataclass
class StatsResult:
    """What this party learned (see :meth:`to_json` for the file layout)."""

    rows: int
    summary: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)  # "party.column" of the matrix
    correlation: np.ndarray | None = None
    vif: dict[str, float] | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, Any] = {"rows": self.rows, "summary": self.summary}
        if self.correlation is not None:
            out["correlation"] = {
                "columns": self.columns,
                "matrix": [[_num(v) for v in row] for row in self.correlation],
            }
        if self.vif is not None:
            out["vif"] = {k: _num(v) for k, v in self.vif.items()}
        return out


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def summarize(X: np.ndarray, names: Sequence[str], quantiles: Sequence[float]) -> dict[str, Any]:
    """Count (non-missing), mean, sample variance and quantiles of each column."""
    out: dict[str, Any] = {}
    for j, name in enumerate(names):
        col = X[:, j][~np.isnan(X[:, j])]
        n = len(col)
        qs = np.quantile(col, quantiles) if n else [math.nan] * len(quantiles)
        out[name] = {
            "count": n,
            "mean": _num(float(col.mean())) if n else None,
            "variance": _num(float(col.var(ddof=1))) if n > 1 else None,
            "quantiles": {f"{q:g}": _num(float(v)) for q, v in zip(quantiles, qs, strict=True)},
        }
    return out


def standardize(X: np.ndarray, names: Sequence[str], where: str) -> np.ndarray:
    """z-scores (ddof 0); refuses missing values and constant columns, naming them."""
    for j, name in enumerate(names):
        col = X[:, j]
        if np.isnan(col).any():
            raise ConfigError(
                f"{where}.{name}",
                f"{int(np.isnan(col).sum())} missing values",
                "impute them first: the correlation needs complete columns",
            )
        if not np.isfinite(col).all():
            raise ConfigError(f"{where}.{name}", "has infinite values", "clean the column")
        if not col.std() > 1e-12:
            raise ConfigError(f"{where}.{name}", "is constant", "drop it: it has no correlation")
    return np.asarray((X - X.mean(axis=0)) / X.std(axis=0))


def frac_bits_for(n: int) -> int:
    """Fraction bits so that a Gram entry of n standardised rows stays below 2^62."""
    return max(8, min(24, (62 - math.ceil(math.log2(max(n, 2)))) // 2))


def pairs(parties: Sequence[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(parties) for b in parties[i + 1 :]]


def _pair_plan(n: int, wa: int, wb: int) -> Plan:
    plan = Plan()
    plan.add_mask("a", n, [(wa, 0)])
    plan.add_mask("b", n, [(wb, 1)])
    plan.cross("a", "b")
    return plan


def ids_digest(ids: Sequence[object]) -> str:
    """SHA-256 of the id column, to check that every party holds the same rows."""
    h = hashlib.sha256()
    for i in ids:
        h.update(str(i).encode() + b"\n")
    return h.hexdigest()


# -- the roles ---------------------------------------------------------------------------
def run_party(
    s: Session,
    ids: Sequence[object],
    names: Sequence[str],
    X: np.ndarray,
    opts: StatsOptions,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> StatsResult:
    """A data party's role: ``X`` holds this party's columns ``names`` on the aligned rows."""
    X = np.asarray(X, dtype=np.float64)
    if s.me not in opts.parties:
        raise ConfigError("stats.parties", f"'{s.me}' is not a data party of the step")
    if X.ndim != 2 or X.shape != (len(ids), len(names)) or not names:
        raise ConfigError(f"parties.{s.me}", f"{X.shape} table for {len(names)} columns")
    if len(ids) == 0:
        raise ConfigError(f"parties.{s.me}.rows", "this party has no rows", "run PSI first")
    cols = _agree(s, len(ids), ids_digest(ids), list(names), opts)
    res = StatsResult(rows=len(ids))
    own = summarize(X, names, opts.quantiles)
    res.summary[s.me] = own
    learns = opts.reveal_to.get(s.me, ())
    for p in opts.learners("summary"):
        if p != s.me:
            s.send(p, Tag.SUMMARY, own)
    if "summary" in learns:
        for p in opts.parties:
            if p != s.me:
                got = s.recv(p, Tag.SUMMARY)
                if not isinstance(got, dict) or sorted(got) != sorted(cols[p]):
                    raise ProtocolError(f"{Tag.SUMMARY}.columns: {p}'s summary is malformed")
                res.summary[p] = got
    corr = opts.learners("correlation")
    if corr:
        R = _correlation(s, standardize(X, names, f"parties.{s.me}"), cols, opts, policy)
        if R is not None:
            res.columns = [f"{p}.{c}" for p in opts.parties for c in cols[p]]
            res.correlation = R
            vif = dict(zip(res.columns, _vif(R), strict=True))
            if "vif" in learns:
                res.vif = vif
            if s.me == corr[0]:
                for p in opts.learners("vif"):
                    if p not in corr:
                        s.send(p, Tag.VIF, vif)
    if "vif" in learns and res.vif is None:
        got = s.recv(corr[0], Tag.VIF)
        if not isinstance(got, dict) or len(got) != sum(len(c) for c in cols.values()):
            raise ProtocolError(f"{Tag.VIF}.vif: malformed")
        res.vif = {str(k): float("inf") if v is None else float(v) for k, v in got.items()}
    return res


def run_dealer(s: Session, opts: StatsOptions) -> list[triples.DealerReport]:
    """The dealer's role: serve every pair's cross triple (it learns the shapes only)."""
    if opts.dealer != s.me:
        raise ConfigError("stats.dealer", f"names '{opts.dealer}', not this party '{s.me}'")
    return [triples.run_dealer(s.sub(f"pair.{a}.{b}"), (a, b)) for a, b in pairs(opts.parties)]


def _agree(
    s: Session, n: int, ids: str, names: list[str], opts: StatsOptions
) -> dict[str, list[str]]:
    """Step 1: the coordinator checks rows and options and sends every party's columns."""
    coord = opts.parties[0]
    if s.me != coord:
        s.send(coord, Tag.HELLO, {"n": n, "ids": ids, "names": names, "digest": opts.digest()})
        start = s.recv(coord, Tag.START)
        if expect_field(start, Tag.START, "error"):
            raise ConfigError("stats", str(start["error"]), "fix the inputs named")
        got = expect_field(start, Tag.START, "names")
        if not isinstance(got, dict) or set(got) != set(opts.parties):
            raise ProtocolError(f"{Tag.START}.names: not one list per data party")
        return {p: [str(c) for c in got[p]] for p in opts.parties}
    cols, problems = {coord: names}, []
    for p in opts.parties[1:]:
        h = s.recv(p, Tag.HELLO)
        if not isinstance(h, dict) or h.get("digest") != opts.digest():
            problems.append(f"'{p}' runs the step with other parameters")
        elif h.get("n") != n or h.get("ids") != ids:
            problems.append(f"'{p}' holds other rows ({h.get('n')} vs {n}); run PSI first")
        elif not isinstance(h.get("names"), list) or not h["names"]:
            problems.append(f"'{p}' has no columns")
        else:
            cols[p] = [str(c) for c in h["names"]]
    for p in opts.parties[1:]:
        s.send(p, Tag.START, {"names": cols, "error": "; ".join(problems)})
    if problems:
        raise ConfigError("stats", "; ".join(problems), "fix the inputs named")
    return cols


def _correlation(
    s: Session,
    Z: np.ndarray,
    cols: dict[str, list[str]],
    opts: StatsOptions,
    policy: SecurityPolicy,
) -> np.ndarray | None:
    """Steps 3-4: the Pearson matrix if this party learns it, else None."""
    n = len(Z)
    targets = opts.learners("correlation")
    fp = FixedPoint(frac_bits_for(n))
    frac = 2 * fp.frac_bits
    blocks: dict[tuple[str, str], np.ndarray] = {(s.me, s.me): Z.T @ Z / n}
    for p in targets:
        if p != s.me:
            s.send(p, Tag.BLOCK, blocks[(s.me, s.me)])
    if s.me in targets:
        for p in opts.parties:
            if p != s.me:
                w = len(cols[p])
                blocks[(p, p)] = _expect_block(s.recv(p, Tag.BLOCK), (w, w))
    for a, b in pairs(opts.parties):
        shape = (len(cols[a]), len(cols[b]))
        sub = s.sub(f"pair.{a}.{b}")
        if s.me in (a, b):
            idx = 0 if s.me == a else 1
            plan = _pair_plan(n, *shape)
            if opts.dealer is not None:
                store = triples.dealer_store(sub, idx, (a, b), opts.dealer, plan)
            else:
                store = he_store(
                    sub, idx, (a, b), plan, scheme=opts.he, key_bits=opts.key_bits, policy=policy
                )
            e = Engine(sub, (a, b), idx, store, fp)
            enc = fp.encode(Z, field=f"parties.{s.me}")
            za = enc if idx == 0 else np.zeros((n, shape[0]), dtype=np.uint64)
            zb = enc if idx == 1 else np.zeros((n, shape[1]), dtype=np.uint64)
            G = e.cross(e.mask("a", za), e.mask("b", zb))
            for t in targets:
                got = e.reveal_to(t, G)
                if got is not None:
                    blocks[(a, b)] = fp.decode(got, frac) / n
        elif s.me in targets:
            blocks[(a, b)] = fp.decode(receive_output(sub, (a, b), shape), frac) / n
    if s.me not in targets:
        return None
    rows = []
    for a in opts.parties:
        row = [blocks[(a, b)] if (a, b) in blocks else blocks[(b, a)].T for b in opts.parties]
        rows.append(np.hstack(row))
    R = np.vstack(rows)
    return np.asarray(np.clip((R + R.T) / 2, -1.0, 1.0))


def _expect_block(v: Any, shape: tuple[int, int]) -> np.ndarray:
    if not isinstance(v, np.ndarray) or v.dtype != np.float64 or v.shape != shape:
        raise ProtocolError(f"{Tag.BLOCK}.block: expected a float matrix of shape {shape}")
    return v


def _vif(R: np.ndarray) -> list[float]:
    """Variance inflation factors: the diagonal of the inverse correlation matrix."""
    try:
        inv = np.linalg.inv(R)
    except np.linalg.LinAlgError:
        return [math.inf] * len(R)
    return [float(v) if v > 0 else math.inf for v in np.diag(inv)]
