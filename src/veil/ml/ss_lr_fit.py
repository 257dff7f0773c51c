"""The arithmetic of SS-LR on shares: batches, the offline plan and the SGD loop.

Two ways to compute the batch gradient ``g = X_B^T d`` (:mod:`veil.ml.ss_lr` lists the
flow and what each party learns; both open only masked values):

``z``     per step ``z = X_B w`` (masked product), ``p = sigmoid(z)``, ``d = p - y_B``
          (``s_B p - (s y)_B`` with class weights), ``g = X_B^T d``: any sigmoid of
          :mod:`veil.mpc.nonlinear`, class weights. Each step consumes two matrix
          triples over the batch's rows, plus the sigmoid's and the weights' products.
``gram``  with the ``linear`` sigmoid and no class weights the gradient is linear in w:
          ``g / |B| = 0.25 (X_B^T X_B / |B|) w + X_B^T (0.5 - y_B) / |B|``. The shared
          mean Gram matrix and vector of each (fixed) batch are computed once (one
          ``cross`` and one ``masked_t`` triple per batch), the Gram matrix is masked
          once, and a step is one (width x width) masked product: the step's cost no
          longer depends on the batch size. Same algorithm, same result up to rounding.
Without a dealer the ``gram`` way makes far fewer triples under HE (one Gram block per
batch instead of a row-sized product per step), so it is used whenever it applies; with
two data parties its Gram matrices and vectors are then shares computed directly from
the parties' bounded data (:func:`veil.mpc.he_cross.gram_shares`, ``direct``), not from
Beaver triples over the masked matrix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from math import ceil

import numpy as np

from veil.errors import ConfigError
from veil.ml.ss_lr_epochs import VALID_MASK, EpochEnd, plan_epoch_end, plan_valid, valid_sums
from veil.ml.ss_lr_options import SSLROptions
from veil.mpc.engine import Engine, Masked
from veil.mpc.he_cross import Layout, Link, gram_shares
from veil.mpc.he_triples import HEStore
from veil.mpc.nonlinear import Sigmoid, plan_sigmoid, sigmoid
from veil.mpc.plan import SHARED, Plan
from veil.mpc.ring import Share, to_signed

__all__ = [
    "MASK",
    "FitReport",
    "RunParams",
    "build_plan",
    "data_bits",
    "fit",
    "partition",
    "use_direct",
    "use_gram",
]

MASK = "X"
_SCALE_BITS = 12  # significant bits of the learning rate and 1/|B| multipliers


@dataclass(frozen=True)
class RunParams:
    """The public parameters every party agrees on after the hello."""

    n: int
    seed: int
    model_id: str
    parties: tuple[str, ...]  # data parties: the label holder first, then the partners
    widths: tuple[int, ...]
    n_valid: int = 0  # validation rows (early stopping), 0: none

    @property
    def compute(self) -> tuple[str, str]:
        return self.parties[0], self.parties[1]


@dataclass
class FitReport:
    """What a party knows about its run (field names as the HE protocol's report;
    ``valid_loss`` and ``step_norms``: the label holder's, per epoch)."""

    epochs_run: int = 0
    best_epoch: int = -1
    seconds: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    step_norms: list[float] = field(default_factory=list)
    stopped_by: str = "epochs"
    offline_seconds: float = 0.0
    rounds: int = 0
    words_opened: int = 0
    triples: str = ""
    method: str = ""


def use_gram(opts: SSLROptions) -> bool:
    """Whether the gradient is linear in w (``linear`` sigmoid, no class weights)."""
    return Sigmoid(opts.sigmoid) is Sigmoid.LINEAR and opts.class_weight is None


def use_direct(run: RunParams, opts: SSLROptions) -> bool:
    """Whether the Gram matrices come straight from the two data parties' data under HE
    (``gram`` way, no dealer, exactly two data parties)."""
    return use_gram(opts) and opts.dealer is None and len(run.widths) == 2


def data_bits(run: RunParams, opts: SSLROptions) -> int:
    """The public bound ``|encoded feature| < 2^bits`` of the ``direct`` way, from agreed
    options only: the clip (and the intercept's 1) at ``feature_frac_bits``, or without a
    clip what :mod:`veil.ml.ss_lr`'s truncation check already enforces
    (``rows * |x| * 2 < 2^(43 - frac_bits - feature_frac_bits)``)."""
    if opts.clip > 0:
        return ceil(max(opts.clip, 1.0) * (1 << opts.feature_frac_bits)).bit_length()
    rows = max(len(b) for b in partition(run.n, opts.batch_size, run.seed))
    return max(2, 43 - opts.frac_bits - rows.bit_length() + 2)


def direct_valid(run: RunParams, opts: SSLROptions) -> bool:
    """Whether the validation Gram sums come the ``direct`` way too (it needs the clip's
    bound on the validation values, which the training rows' checks do not give)."""
    return use_direct(run, opts) and opts.clip > 0


def partition(n: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """The fixed batches: a seeded permutation of the rows in ``n // batch_size`` nearly
    equal parts (each at least ``batch_size`` rows; 0 = one full batch)."""
    k = 1 if batch_size <= 0 else max(1, n // batch_size)
    order = np.random.default_rng([seed, 0]).permutation(n)
    return [np.sort(p) for p in np.array_split(order, k)]


def visit_order(n_batches: int, seed: int, epoch: int) -> list[int]:
    """The order in which ``epoch`` visits the fixed batches."""
    return [int(b) for b in np.random.default_rng([seed, epoch, 1]).permutation(n_batches)]


def build_plan(run: RunParams, opts: SSLROptions) -> Plan:
    """Every triple of a training run (public parameters only); one phase per epoch,
    after a set-up phase for the ``gram`` way."""
    plan = Plan()
    owners = [0, 1] + [SHARED] * (len(run.widths) - 2)
    blocks = list(zip(run.widths, owners, strict=True))
    plan.add_mask(MASK, run.n, blocks)
    parts = partition(run.n, opts.batch_size, run.seed)
    for rows in parts:
        plan.add_rowset(rows)
    gram = use_gram(opts)
    if gram:
        width = sum(run.widths)
        square = plan.add_rowset(np.arange(width))
        for k in range(len(parts)):
            plan.add_mask(f"G{k}", width, [(width, SHARED)])
            if not use_direct(run, opts):
                plan.cross(MASK, MASK, k)
                plan.masked_t(MASK, k)
    if run.n_valid and not direct_valid(run, opts):
        plan_valid(plan, run.n_valid, blocks)
    for epoch in range(opts.epochs):
        plan.new_phase()
        for k in visit_order(len(parts), run.seed, epoch):
            if gram:
                plan.masked(f"G{k}", square)
                continue
            size = len(parts[k])
            plan.masked(MASK, k)
            plan_sigmoid(plan, Sigmoid(opts.sigmoid), size)
            if opts.class_weight is not None:
                plan.mul(size)
            plan.masked_t(MASK, k)
        plan_epoch_end(plan, opts, sum(run.widths), run.n_valid)
    return plan


def fit(  # noqa: PLR0917
    e: Engine,
    run: RunParams,
    opts: SSLROptions,
    Xs: Share,
    ys: Share,
    wts: tuple[Share, Share] | None,
    report: FitReport,
    valid: tuple[Share, Share, np.ndarray | None] | None = None,
    labels: np.ndarray | None = None,
) -> Share:
    """Mini-batch SGD on shares; returns this party's share of the weights (with
    ``patience``, of the best epoch's).

    ``Xs``: this party's share of the joint feature matrix (``feature_frac_bits``),
    ``ys``: of the labels, ``wts``: of the class weights ``s`` and ``s * y``, ``valid``:
    of the validation rows' features and labels, and the label holder's own validation
    labels (:mod:`veil.ml.ss_lr_epochs`); ``labels``: the label holder's own 0/1 labels
    (the ``direct`` way needs them)."""
    direct = use_direct(run, opts)
    M = None if direct else e.mask(MASK, Xs)
    Mv = None if valid is None or direct_valid(run, opts) else e.mask(VALID_MASK, valid[0])
    width = sum(run.widths)
    w = e.constant(np.zeros((width, 1), dtype=np.uint64))
    pen = np.ones((width, 1), dtype=np.uint64)
    if opts.fit_intercept:
        pen[run.widths[0] - 1] = 0
    l2 = opts.penalty == "l2" and opts.alpha > 0
    parts = partition(run.n, opts.batch_size, run.seed)
    gram = use_gram(opts)
    report.method = "gram" if gram else "z"
    if direct:
        t0 = time.perf_counter()
        setup = _gram_setup(e, M, ys, parts, opts, _direct(e, run, opts, Xs, labels, parts))
        report.offline_seconds += time.perf_counter() - t0
    else:
        setup = _gram_setup(e, M, ys, parts, opts) if gram else []
    square = len(parts)  # the plan's rowset of the Gram matrices' rows
    end = None
    if opts.tol > 0 or valid is not None:
        sums = None
        if valid is not None:
            sums = _valid_sums(e, run, opts, valid, Mv, len(parts) + int(gram))
        end = EpochEnd(e, opts, sums, lh=run.parties[0])
    best = w
    for epoch in range(opts.epochs):
        t0 = time.perf_counter()
        lr = opts.learning_rate_at(epoch)
        w_before = w
        for k in visit_order(len(parts), run.seed, epoch):
            if gram:
                G, h = setup[k]
                g = e.masked_matmul(G, square, w) + h  # mean gradient
                step = e.scale(g, lr, sig_bits=_SCALE_BITS)
            else:
                assert M is not None
                g = _z_gradient(e, M, k, parts[k], w, (ys, wts), opts)
                step = e.scale(g, lr / len(parts[k]), sig_bits=_SCALE_BITS)
            if l2:
                step = step + e.scale(w, lr * opts.alpha, sig_bits=_SCALE_BITS) * pen
            w = w - step
        decision = None if end is None else end(w, w_before)
        report.seconds.append(time.perf_counter() - t0)
        report.epochs_run = epoch + 1
        if decision is not None:
            if decision.loss is not None:
                report.valid_loss.append(decision.loss)
            if decision.step_norm is not None:
                report.step_norms.append(decision.step_norm)
            if decision.keep:
                best, report.best_epoch = w, epoch
            if decision.stop:
                report.stopped_by = decision.stopped_by
                break
    report.rounds, report.words_opened = e.rounds, e.words_opened
    return best if opts.patience > 0 else w


def _valid_sums(  # noqa: PLR0917
    e: Engine,
    run: RunParams,
    opts: SSLROptions,
    valid: tuple[Share, Share, np.ndarray | None],
    Mv: Masked | None,
    rowset: int,
) -> tuple[Share, Share, int]:
    """Shares of the validation rows' ``X^T X`` and ``X^T (0.5 - y)`` and their number:
    over the masked block (``rowset``: the plan's validation rows) or the ``direct`` way."""
    Xv, yv, labels = valid
    fx, f = opts.feature_frac_bits, e.fp.frac_bits
    if Mv is not None:
        return (*valid_sums(e, Mv, yv, rowset, fx), len(Xv))
    ((G, h),) = _direct(e, run, opts, Xv, labels, [np.arange(len(Xv))])
    h = h * np.uint64(1 << (f - fx - 1)) if f > fx else e.trunc(h, 1)  # as in _gram_setup
    return G, h, len(Xv)


def _z_gradient(  # noqa: PLR0917
    e: Engine,
    M: Masked,
    k: int,
    rows: np.ndarray,
    w: Share,
    labels: tuple[Share, tuple[Share, Share] | None],
    opts: SSLROptions,
) -> Share:
    """``X_B^T d`` (summed over the batch) through the scores."""
    ys, wts = labels
    fx = opts.feature_frac_bits
    z = e.masked_matmul(M, k, w, shift=fx)
    p = sigmoid(e, z, Sigmoid(opts.sigmoid))
    d = p - ys[rows] if wts is None else e.mul(wts[0][rows], p) - wts[1][rows]
    return e.masked_tmatmul(M, k, d, shift=fx)


def _gram_setup(  # noqa: PLR0917
    e: Engine,
    M: Masked | None,
    ys: Share,
    parts: list[np.ndarray],
    opts: SSLROptions,
    direct: list[tuple[Share, Share]] | None = None,
) -> list[tuple[Masked, Share]]:
    """Per batch: ``0.25 X_B^T X_B / |B|`` (masked once) and ``X_B^T (0.5 - y_B) / |B|``,
    from triples over the masked matrix ``M``, or from ``direct``'s shares of
    ``X_B^T X_B`` and ``X_B^T (1 - 2 y_B)`` (``feature_frac_bits``)."""
    fx, f = opts.feature_frac_bits, e.fp.frac_bits
    v = None if direct else e.constant(e.fp.encode(np.full(ys.shape, 0.5))) - ys
    out: list[tuple[Masked, Share]] = []
    for k, rows in enumerate(parts):
        if direct is None:
            assert M is not None and v is not None
            G = e.cross(M, M, k)  # 2 fx fraction bits
            h = e.masked_tmatmul(M, k, v[rows], shift=fx)
        else:  # X^T (1 - 2y) = 2 X^T (0.5 - y) at fx bits, brought to f bits exactly
            G, h = direct[k]
            h = h * np.uint64(1 << (f - fx - 1)) if f > fx else e.trunc(h, 1)
        G = e.trunc(G, 2 * fx - f) if 2 * fx >= f else G * np.uint64(1 << (f - 2 * fx))
        G = e.scale(G, 0.25 / len(rows), sig_bits=_SCALE_BITS)
        h = e.scale(h, 1.0 / len(rows), sig_bits=_SCALE_BITS)
        out.append((e.mask(f"G{k}", G), h))
    return out


def _direct(  # noqa: PLR0917
    e: Engine,
    run: RunParams,
    opts: SSLROptions,
    Xs: Share,
    labels: np.ndarray | None,
    parts: list[np.ndarray],
) -> list[tuple[Share, Share]]:
    """Shares of each batch's ``X_B^T X_B`` and ``X_B^T (1 - 2 y_B)`` from the two data
    parties' own blocks (the label holder's labels as a further column)."""
    if not isinstance(e.store, HEStore) or (e.me == 0) != (labels is not None):
        raise ConfigError("hetero_lr", "the direct Gram way needs HE keys and the labels")
    w0, w1 = run.widths
    own = Xs[:, :w0] if e.me == 0 else Xs[:, w0 : w0 + w1]
    keys = e.store.keys
    bits = data_bits(run, opts)
    layout = Layout((w0 + 1, w1), (bits, bits), max(len(p) for p in parts), keys.stat_sec)
    extra = None
    if labels is not None:
        extra = (1 - 2 * np.asarray(labels, dtype=np.int64)).reshape(-1, 1)
    link = Link(e.ch, e.me, e.parties, keys)
    return gram_shares(link, to_signed(own), layout, parts, n_extra=1, extra=extra)
