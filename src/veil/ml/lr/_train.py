"""Vertical logistic regression with additive HE, no third party: the two role functions.

Papers: Hardy et al. 2017, "Private federated learning on vertically partitioned data
via entity resolution and additively homomorphic encryption" (Taylor loss, masked
gradients); Yang et al. 2019, "Parallel distributed logistic regression for vertical
federated learning without third-party coordinator" (each party owns its key pair, no
arbiter). Roles: one ``label_holder`` (labels y, block X_L, the intercept) and one or
more ``partner`` parties (block X_P each). Rows are aligned (PSI) and every party draws
the same mini-batches from ``LROptions.seed``. Each party keeps only its own coefficients.

Residual: the logistic gradient's ``sigmoid(z) - y`` is replaced by its first-order
Taylor form ``d = 0.25 z + 0.5 - y`` with ``z = z_L + sum_P z_P`` (``z_p = X_p w_p``),
optionally times class weights ``s``. Standardised features are winsorised at ``clip``
(3 by default) which brings the Taylor model's AUC within 0.005 of exact logistic
regression on default_credit.

A run: the start (:mod:`._setup`: keys, widths, the batch rule); the batch gradients of
the chosen protocol, ``he`` (:mod:`._residuals`, any number of partners and class
weights) or ``gram`` (:mod:`._gram`, one partner); the one training loop
(:mod:`._loop`); the end of each epoch (:mod:`._validation`: convergence, the
validation Taylor loss for early stopping, the label holder's stop/keep decision).

What each party learns (semi-honest), in full:
  - label holder: its own batch gradients ``X_L,B^T d_B`` (hence its coefficients);
    per epoch one "converged" bit per partner and, with a validation set, the
    validation Taylor log-loss (one number).
  - partner: its own batch gradients ``X_P,B^T d_B``; the run's parameters (row counts,
    widths, protocol); per epoch the label holder's stop/keep bits.
  Own gradients are aggregates over at least ``policy.min_batch`` rows of the widest
  block; :mod:`._residuals` says what they still imply. Nothing crosses the wire in the
  clear but public keys, digests, widths, flags and masked values: never labels,
  residuals, scores or features.
"""

from __future__ import annotations

import time

import numpy as np

from veil.errors import ConfigError
from veil.ml.labels import check_labels, sample_weights
from veil.ml.lr._gram import LabelHolderGram, PartnerGram
from veil.ml.lr._loop import BatchPlan, Stepper, TrainReport, run_epochs
from veil.ml.lr._math import FloatArray, fixed_partition
from veil.ml.lr._model import PartyData, PartyModel
from veil.ml.lr._options import LROptions, LRProtocol
from veil.ml.lr._residuals import LabelHolderStep, PartnerStep
from veil.ml.lr._setup import (
    LABEL_HOLDER,
    PARTNER,
    Run,
    prepare,
    setup_label_holder,
    setup_partner,
)
from veil.ml.lr._validation import LabelHolderEpochs, PartnerEpochs
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy


def _plan(run: Run, n: int, opts: LROptions) -> BatchPlan:
    fixed = run.proto is LRProtocol.GRAM
    return BatchPlan(n, opts.batch_size, opts.seed, run.min_batch, fixed)


def _labels(
    data: PartyData, valid: PartyData | None, opts: LROptions
) -> tuple[FloatArray, FloatArray | None]:
    if data.y is None:
        raise ConfigError("label_holder.label", "the label holder has no label column")
    y = check_labels(data.y, "label_holder.label").astype(np.float64)
    if opts.patience > 0 and valid is None:
        raise ConfigError("hetero_lr.patience", "early stopping needs a validation set")
    if valid is None:
        return y, None
    if valid.y is None:
        raise ConfigError("label_holder.valid.label", "the validation rows have no labels")
    return y, check_labels(valid.y, "label_holder.valid.label").astype(np.float64)


def train_label_holder(
    s: Session,
    data: PartyData,
    opts: LROptions,
    valid: PartyData | None = None,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> tuple[PartyModel, TrainReport]:
    """Train as the label holder with every other party of ``s`` as a partner."""
    y, yv = _labels(data, valid, opts)
    blk, mean, std = prepare(data, valid, opts, "label_holder", opts.fit_intercept)
    t0 = time.perf_counter()
    run = setup_label_holder(s, data, valid, opts, blk=blk, policy=policy)
    plan = _plan(run, data.n_rows, opts)
    stepper: Stepper
    if run.proto is LRProtocol.GRAM:
        parts = fixed_partition(data.n_rows, opts.batch_size, opts.seed, run.min_batch)
        stepper = LabelHolderGram(run, blk.X, y, parts, opts.feature_bits)
    else:
        sw = None
        if opts.class_weight is not None:
            sw = sample_weights(y, opts.class_weight, "hetero_lr.class_weight")
        stepper = LabelHolderStep(run, blk.X, y, sw, opts.feature_bits)
    end = LabelHolderEpochs(run, opts, blk.valid, yv)
    w, report = run_epochs(
        s, blk, opts, plan, stepper=stepper, end=end, setup_s=time.perf_counter() - t0
    )
    k = blk.n_penalised
    model = PartyModel(
        model_id=run.model_id,
        role=LABEL_HOLDER,
        party=s.me,
        feature_names=data.feature_names,
        coef=w[:k].copy(),
        intercept=float(w[k]) if opts.fit_intercept else None,
        mean=mean,
        std=std,
        clip=opts.clip,
        parties=(s.me, *run.partners),
        options=opts.to_json(),
    )
    return model, report


def train_partner(
    s: Session,
    data: PartyData,
    opts: LROptions,
    valid: PartyData | None = None,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> tuple[PartyModel, TrainReport]:
    """Train as a partner of the party playing ``label_holder`` in ``s``."""
    t0 = time.perf_counter()
    run, blk, mean, std = setup_partner(s, data, valid, opts, policy)
    plan = _plan(run, data.n_rows, opts)
    stepper: Stepper
    if run.proto is LRProtocol.GRAM:
        parts = fixed_partition(data.n_rows, opts.batch_size, opts.seed, run.min_batch)
        stepper = PartnerGram(run, blk.X, parts, opts.feature_bits)
    else:
        stepper = PartnerStep(run, blk.X, opts.class_weight is not None, opts.feature_bits)
    end = PartnerEpochs(run, opts, blk.valid)
    w, report = run_epochs(
        s, blk, opts, plan, stepper=stepper, end=end, setup_s=time.perf_counter() - t0
    )
    model = PartyModel(
        model_id=run.model_id,
        role=PARTNER,
        party=s.me,
        feature_names=data.feature_names,
        coef=w.copy(),
        intercept=None,
        mean=mean,
        std=std,
        clip=opts.clip,
        parties=(run.label_holder, *run.partners),
        options=opts.to_json(),
    )
    return model, report
