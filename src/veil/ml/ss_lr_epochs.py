"""The end of an SS-LR epoch on shares: convergence (``tol``) and early stopping
(``patience``) without revealing any per-row value.

The validation metric is the second-order Taylor log-loss, the loss the HE protocol's
early stopping uses (:mod:`veil.ml.lr._validation`). It is quadratic in the weights, so
it is computed from a shared Gram matrix of the validation rows, made once:

    loss(w) = log 2 + h^T w + w^T G w,   G = X_v^T X_v / (8 n_v),  h = X_v^T (0.5 - y_v) / n_v

(``X_v``: the joint validation block, standardised with the training rows' scaling;
``y_v``: the label holder's validation labels). The shares of ``X_v^T X_v`` and
``X_v^T (0.5 - y_v)`` come from Beaver triples over ``X_v`` masked once (:func:`plan_valid`)
or, where SS-LR's training takes its Gram matrices directly under HE
(:func:`veil.mpc.he_cross.gram_shares`), from the same. Per epoch it costs two small
products (``G w`` and ``w^T (G w + h)``); the shared loss is then revealed to the label
holder alone. With ``tol`` the squared norm of
the epoch's whole step ``|w - w_before|^2`` is computed alike (kept at ``2 f`` fraction
bits: no truncation) and revealed to the label holder alone.

Messages: ``mpc_output`` (the compute partner's share of each revealed scalar, to the
label holder) and ``ss_epoch`` (label holder -> compute partner: ``stop``, ``keep``).

What each party learns, per epoch: the label holder the validation Taylor loss (one
number) and, with ``tol``, the norm of the epoch's step (one number); the compute partner
two bits (stop, keep the current weights as the best so far). Further partners (input
parties) learn nothing until their coefficients. No vector is revealed: everything else
is a Beaver opening of uniformly masked words (:mod:`veil.mpc.engine`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from veil.messages import Fields
from veil.ml.ss_lr_options import SSLROptions
from veil.mpc.engine import Engine, Masked
from veil.mpc.plan import Plan
from veil.mpc.ring import Share

__all__ = [
    "VALID_MASK",
    "EpochDecision",
    "EpochEnd",
    "Tag",
    "plan_epoch_end",
    "plan_valid",
    "valid_sums",
]

VALID_MASK = "V"


class Tag(StrEnum):
    """Messages of the epoch end beyond :mod:`veil.mpc`'s."""

    EPOCH = "ss_epoch"  # label holder -> compute partner: stop, keep


@dataclass(frozen=True)
class EpochDecision:
    """How an epoch ended; ``loss`` and ``step_norm`` are known to the label holder only."""

    stop: bool
    keep: bool
    stopped_by: str = "epochs"
    loss: float | None = None
    step_norm: float | None = None

    def to_wire(self) -> dict[str, object]:
        return {"stop": self.stop, "keep": self.keep}

    @classmethod
    def from_wire(cls, obj: object) -> EpochDecision:
        f = Fields(Tag.EPOCH, obj)
        return cls(f.get_bool("stop"), f.get_bool("keep"), "label_holder")


def plan_valid(plan: Plan, n_valid: int, blocks: list[tuple[int, int]]) -> int:
    """The set-up triples of the validation Gram matrix; returns the rows' rowset."""
    plan.add_mask(VALID_MASK, n_valid, blocks)
    rows = plan.add_rowset(np.arange(n_valid))
    plan.cross(VALID_MASK, VALID_MASK, rows)
    plan.masked_t(VALID_MASK, rows)
    return rows


def plan_epoch_end(plan: Plan, opts: SSLROptions, width: int, n_valid: int) -> None:
    """The triples one epoch end consumes (after the epoch's steps)."""
    if opts.tol > 0:
        plan.matmul(1, width, 1)
    if n_valid:
        plan.matmul(width, width, 1)
        plan.matmul(1, width, 1)


def valid_sums(e: Engine, M: Masked, yv: Share, rows: int, fx: int) -> tuple[Share, Share]:
    """Shares of ``X_v^T X_v`` and ``X_v^T (0.5 - y_v)`` from ``X_v`` masked once
    (consumes :func:`plan_valid`'s triples)."""
    v = e.constant(e.fp.encode(np.full(yv.shape, 0.5))) - yv
    return e.cross(M, M, rows), e.masked_tmatmul(M, rows, v, shift=fx)


def mean_of(e: Engine, x: Share, n: int) -> Share:
    """``x / n`` for a large ``n``: truncate by ``ceil(log2 n)`` bits first, then scale by
    ``2^bits / n`` (in [1, 2)), so no intermediate value grows by ``n``'s bits."""
    bits = max(0, math.ceil(math.log2(n)))
    return e.scale(e.trunc(x, bits), 2.0**bits / n)


class EpochEnd:
    """A compute party's end of every epoch (``lh``: this party is the label holder)."""

    def __init__(
        self,
        e: Engine,
        opts: SSLROptions,
        valid: tuple[Share, Share, int] | None,
        *,
        lh: str,
    ) -> None:
        """``valid``: shares of the validation rows' ``X_v^T X_v`` (2 ``feature_frac_bits``
        fraction bits) and ``X_v^T (0.5 - y_v)`` (``frac_bits``), and their number."""
        self.e, self.opts, self.lh = e, opts, lh
        self.is_lh = e.parties[e.me] == lh
        self.best, self.since_best = math.inf, 0
        self.G: Share | None = None
        self.h: Share | None = None
        if valid is not None:
            G, h, n = valid
            fx, f = opts.feature_frac_bits, e.fp.frac_bits
            bits = max(0, math.ceil(math.log2(8 * n)))
            shift = 2 * fx - f + bits
            G = e.trunc(G, shift) if shift >= 0 else G * np.uint64(1 << -shift)
            self.G = e.scale(G, 2.0**bits / (8 * n))
            self.h = mean_of(e, h, n)

    def __call__(self, w: Share, w_before: Share) -> EpochDecision:
        """Reveal this epoch's scalars to the label holder, which decides; both compute
        parties return the same stop/keep decision."""
        e, opts = self.e, self.opts
        norm = loss = None
        if opts.tol > 0:
            d = w - w_before
            sq = e.reveal_to(self.lh, e.matmul(d.T, d, shift=0))  # 2 f fraction bits
            if sq is not None:
                norm = math.sqrt(max(0.0, float(e.fp.decode(sq, 2 * e.fp.frac_bits)[0, 0])))
        if self.G is not None and self.h is not None:
            u = e.matmul(self.G, w) + self.h
            got = e.reveal_to(self.lh, e.matmul(w.T, u))
            if got is not None:
                loss = math.log(2.0) + float(e.fp.decode(got)[0, 0])
        if not self.is_lh:
            return EpochDecision.from_wire(e.ch.recv(self.lh, Tag.EPOCH))
        stop, keep, by = False, True, "epochs"
        if loss is not None:
            keep = loss < self.best
            self.best, self.since_best = (loss, 0) if keep else (self.best, self.since_best + 1)
            if opts.patience > 0 and self.since_best >= opts.patience:
                stop, by = True, "early_stopping"
        if norm is not None and norm < opts.tol:
            stop, by = True, "tol"
        decision = EpochDecision(stop, keep, by, loss, norm)
        e.ch.send(e.peer, Tag.EPOCH, decision.to_wire())
        return decision
