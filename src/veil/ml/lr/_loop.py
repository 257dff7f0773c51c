"""The training loop of vertical LR, once for every role and protocol.

Each party runs :func:`run_epochs` with the gradient step of its role in the chosen
protocol (a :class:`Stepper`: :mod:`._residuals` or :mod:`._gram`) and the epoch end of
its role (:mod:`._validation`): the batches, the learning-rate schedule, the proximal
step, the best-epoch bookkeeping and the per-epoch timings are the same code for all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from veil.ml.lr._math import FloatArray, IndexArray, batches, fixed_batches, step
from veil.ml.lr._options import LROptions
from veil.ml.lr._setup import Block
from veil.net.session import Session


class Stepper(Protocol):
    """One party's batch gradient in one protocol."""

    def grad(self, bs: Session, b: int, idx: IndexArray, nxt: int, w: FloatArray) -> FloatArray:
        """The gradient (sum over the batch) of this party's coefficients ``w`` on batch
        ``b`` (rows ``idx``), run in the batch's session ``bs``; ``nxt`` is the size of the
        batch after it (0 after the last), for offline work."""
        ...

    def close(self) -> None:
        """Join any background work."""
        ...


@dataclass(frozen=True)
class Decision:
    """How an epoch ended: stop training, keep these coefficients as the best so far."""

    stop: bool
    keep: bool
    stopped_by: str = "epochs"
    valid_loss: float | None = None


class EpochEnd(Protocol):
    """A role's end of an epoch (convergence, validation, the label holder's decision)."""

    def __call__(self, epoch: int, es: Session, w: FloatArray, moved: float) -> Decision: ...


@dataclass
class TrainReport:
    """What a party knows about its run: per-epoch seconds and (label holder) the
    validation Taylor log-loss per epoch."""

    epochs_run: int = 0
    best_epoch: int = -1
    seconds: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    stopped_by: str = "epochs"


@dataclass(frozen=True)
class BatchPlan:
    """The batches of every epoch: reshuffled per epoch, or (``fixed``) one partition
    visited in a fresh order; drawn from the options' seed, short last batches merged."""

    n: int
    batch_size: int
    seed: int
    min_rows: int
    fixed: bool

    def epoch(self, e: int) -> list[tuple[int, IndexArray]]:
        if self.fixed:
            return fixed_batches(self.n, self.batch_size, e, self.seed, self.min_rows)
        return list(enumerate(batches(self.n, self.batch_size, e, self.seed, self.min_rows)))


def run_epochs(
    s: Session,
    blk: Block,
    opts: LROptions,
    plan: BatchPlan,
    *,
    stepper: Stepper,
    end: EpochEnd,
    setup_s: float = 0.0,
) -> tuple[FloatArray, TrainReport]:
    """Train ``blk.w`` in place; returns the coefficients to keep (the best epoch's with
    early stopping, else the last) and the report."""
    report = TrainReport()
    best_w = blk.w.copy()
    todo = plan.epoch(0)
    try:
        for epoch in range(opts.epochs):
            t0 = time.perf_counter()
            lr = opts.learning_rate_at(epoch)
            w_before = blk.w.copy()
            after = plan.epoch(epoch + 1) if epoch + 1 < opts.epochs else []
            for k, (b, idx) in enumerate(todo):
                nxt = todo[k + 1 : k + 2] or after[:1]
                nxt_rows = len(nxt[0][1]) if nxt else 0
                g = stepper.grad(s.sub(f"e{epoch}b{b}"), b, idx, nxt_rows, blk.w)
                blk.w = step(blk.w, g / len(idx), lr, opts, blk.n_penalised)
            todo = after
            moved = float(np.max(np.abs(blk.w - w_before)))
            decision = end(epoch, s.sub(f"e{epoch}"), blk.w, moved)
            if decision.valid_loss is not None:
                report.valid_loss.append(decision.valid_loss)
            if decision.keep:
                best_w, report.best_epoch = blk.w.copy(), epoch
            report.seconds.append(time.perf_counter() - t0 + (setup_s if epoch == 0 else 0.0))
            report.epochs_run = epoch + 1
            s.progress("hetero_lr", (epoch + 1) / opts.epochs)
            if decision.stop:
                report.stopped_by = decision.stopped_by
                break
    finally:
        stepper.close()
    return (best_w if opts.patience > 0 else blk.w), report
