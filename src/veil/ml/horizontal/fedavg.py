"""Horizontal federated learning: banks with the same columns train one model by
federated averaging [McMahan et al., "Communication-Efficient Learning of Deep Networks
from Decentralized Data", AISTATS 2017], optionally FedProx [Li et al., MLSys 2020],
with every sum taken by secure aggregation (:mod:`veil.protocols.secagg`) and optional
distributed differential privacy (:mod:`veil.ml.horizontal.dp`).

Roles: ``client`` (each bank: rows, a label) and ``aggregator`` (a party without data,
or one of the banks, which then also contributes its own update).

Flow:
  1. B -> A  SCHEMA: column names and kinds. A checks that every bank has the same set
             with the same kinds (else every party stops with an error naming the bank
             and the column); A -> B SCHEMA_OK: the column order.
  2. secure aggregation's setup, once for every sum of the training (keys and shares
     for each sum made in advance; each sum then costs MASKED, UNMASK, REVEAL, and
     secure aggregation's RESULT rides on A's next message, SCALING or MODEL, which
     carries ``abort`` if the sum failed after the reveals).
     With ``standardize``: a secure sum of (sum x, sum x^2, n) over each bank's
     training rows; A -> B SCALING: pooled means and standard deviations.
  3. each round r: A -> B MODEL (global parameters, how many banks are in the round).
     Each bank scores its held-out rows with it (loss), trains ``local_epochs`` from it,
     and the banks' (n_B * update_B, n_B, n_B * train loss_B, validation loss sums) are
     summed securely; A divides: the new global model is the row-weighted mean.
     With ``dp`` each bank instead sends its update clipped to ``clip`` plus its share of
     Gaussian noise, and A averages them with equal weights.
  4. ``early_stopping``: A keeps the model with the lowest pooled validation loss and
     stops after ``early_stopping`` rounds without improvement. A -> B MODEL (final).

What each party learns:
  - the aggregator: the column names and kinds; per round, the sum of the banks'
    weighted updates (so the global model), the total training rows, the pooled
    training and validation losses; which banks dropped. With dp: only the noised sum
    of clipped updates and the number of banks in it. Never a row, a label, a score or
    one bank's update (secure aggregation; with ``secure_aggregation: false`` it sees
    each bank's update in the clear).
  - a bank: the column order, the pooled scaling, every round's global model and the
    round history (pooled losses, banks per round, epsilon).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import count
from typing import Any

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError
from veil.ml.horizontal import dp
from veil.ml.horizontal.local import BankData, holdout_mask, local_train, row_weights, weighted_loss
from veil.ml.horizontal.messages import Model, Scaling, Schema, SchemaOk, Tag
from veil.ml.horizontal.model import GlobalModel
from veil.ml.horizontal.models import FloatArray
from veil.ml.horizontal.options import FedAvgOptions
from veil.ml.horizontal.summing import AggregatorSums, BankSums
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy
from veil.protocols import secagg
from veil.protocols.secagg import AGGREGATOR, RoundAborted, broadcast, post


@dataclass(frozen=True)
class FedResult:
    """A party's outcome: the global model and, at a bank, which rows it held out."""

    model: GlobalModel
    holdout: npt.NDArray[np.bool_] | None


class _Local:
    """One bank's rows during training: the training and held-out parts, scaled."""

    def __init__(self, data: BankData, opts: FedAvgOptions, who: str) -> None:
        self.opts, self.spec = opts, opts.spec
        self.holdout = holdout_mask(data.y, opts.validation_share, opts.seed, who)
        fit = ~self.holdout
        self.X, self.y = data.X[fit], data.y[fit]
        self.Xv, self.yv = data.X[self.holdout], data.y[self.holdout]
        if self.y.sum() == 0 or self.y.sum() == self.y.size:
            raise ConfigError(
                f"parties.{who}.label",
                "its training rows hold a single class",
                "every bank needs both classes (lower validation_share or add rows)",
            )
        self.w, self.wv = row_weights(self.y, opts), row_weights(self.yv, opts)
        self.Z, self.Zv = self.X, self.Xv
        self.rng = np.random.default_rng([opts.seed, len(who), *who.encode()])

    @property
    def fit(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        return self.Z, self.y, self.w

    def stats(self) -> FloatArray:
        return np.concatenate([self.X.sum(axis=0), (self.X**2).sum(axis=0), [self.y.size]])

    def set_scaling(self, mean: FloatArray, scale: FloatArray) -> None:
        self.Z, self.Zv = (self.X - mean) / scale, (self.Xv - mean) / scale

    def contribution(self, theta: FloatArray, train: bool, n_banks: int) -> FloatArray:
        """What this bank adds to the round's secure sum (layout in :func:`dims`)."""
        o = self.opts
        if o.dp is not None:
            new, _ = local_train(self.spec, theta, self.fit, o, self.rng, anchor=theta)
            delta = dp.clip(new - theta, o.dp.clip) + dp.noise_share(theta.size, o.dp, n_banks)
            return np.concatenate([delta, [1.0]])
        valid = weighted_loss(self.spec, theta, (self.Zv, self.yv, self.wv), o.focal_gamma)
        if not train:
            return np.asarray(valid, dtype=np.float64)
        new, loss = local_train(self.spec, theta, self.fit, o, self.rng, anchor=theta)
        n = float(self.y.size)
        return np.concatenate([n * (new - theta), [n, n * loss], valid])


def dims(p: int, opts: FedAvgOptions, train: bool) -> int:
    """Length of a round's vector: the update, count, train loss and validation sums
    (``p + 4``), the validation sums alone (2), or with dp the update and a count."""
    if opts.dp is not None:
        return p + 1
    return p + 4 if train else 2


# -- the bank --------------------------------------------------------------------------


def train_client(
    session: Session,
    data: BankData,
    opts: FedAvgOptions,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> FedResult:
    """Bank role: train the global model with the aggregator and the other banks."""
    agg = session.party_of(AGGREGATOR)
    s0 = session.sub("schema")
    s0.send(agg, Tag.SCHEMA, Schema(list(data.columns), list(data.kinds)).pack())
    ok = SchemaOk.unpack(s0.recv(agg, Tag.SCHEMA_OK))
    if ok.abort:
        raise ConfigError("fedavg", ok.abort, "every bank must have the same columns and kinds")
    if sorted(ok.columns) != sorted(data.columns):
        raise ConfigError("fedavg", "the aggregator's column list differs from this bank's")
    data = data.reorder(ok.columns)
    local = _Local(data, opts, session.me)
    d = len(ok.columns)
    sums = BankSums(session, opts, policy)
    mean, scale = np.zeros(d), np.ones(d)
    p = opts.spec.n_params(d)
    if opts.standardize:
        sums.add(local.stats(), 2 * d + 1, dims(p, opts, True))
        sc = Scaling.unpack(sums.reply(session.sub("scaling"), Tag.SCALING), d)
        if sc.abort:
            raise RoundAborted(sc.abort)
        mean, scale = sc.mean, sc.scale
        local.set_scaling(mean, scale)
    for r in count(1):
        sr = session.sub(f"round{r}")
        msg = Model.unpack(sums.reply(sr, Tag.MODEL), p)
        if msg.abort:
            raise RoundAborted(msg.abort)
        if msg.stop:
            model = _model(
                opts, data=data, mean=mean, scale=scale, params=msg.params, history=msg.history
            )
            return FedResult(model, local.holdout)
        # The masks of this sum were made while the last one was unmasked: train now.
        update = partial(local.contribution, msg.params, msg.train, max(msg.banks, 1))
        sums.add(update, dims(p, opts, msg.train), dims(p, opts, r + 1 <= opts.rounds))
    raise AssertionError("unreachable")  # pragma: no cover


def _model(
    opts: FedAvgOptions,
    *,
    data: BankData,
    mean: FloatArray,
    scale: FloatArray,
    params: FloatArray,
    history: Sequence[dict[str, Any]],
) -> GlobalModel:
    final = dict(history[-1]) if history else {}
    return GlobalModel(
        opts.spec,
        data.columns,
        data.kinds,
        mean,
        scale,
        params,
        tuple(h for h in history if "round" in h),
        str(final.get("stopped_by", "rounds")),
        final.get("dp"),
    )


# -- the aggregator ---------------------------------------------------------------------


def train_aggregator(
    session: Session,
    opts: FedAvgOptions,
    *,
    banks: Sequence[str] | None = None,
    data: BankData | None = None,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> FedResult:
    """Aggregator role: run the rounds over ``banks`` (default: every other party); with
    ``data`` the aggregator is a bank too and trains on its own rows."""
    banks = list(banks) if banks is not None else session.peers()
    if opts.secure_aggregation:
        secagg.make_plan(banks, opts.secagg_params())  # refuses unsafe settings up front
    elif not banks:
        raise ConfigError("fedavg", "needs at least one bank besides the aggregator")
    columns, kinds = _agree_schema(session.sub("schema"), banks, data)
    mine = data.reorder(columns) if data is not None else None
    local = _Local(mine, opts, session.me) if mine is not None else None
    d = len(columns)
    sums = AggregatorSums(session, opts, banks, own=local is not None, policy=policy)
    mean, scale = np.zeros(d), np.ones(d)
    if opts.standardize:
        ss = session.sub("scaling")
        try:
            total = sums.total(2 * d + 1, local.stats() if local else None)
        except RoundAborted as e:
            _tell(ss, sums.waiting, Tag.SCALING, Scaling(mean, scale, str(e)).pack())
            raise
        n = total[-1]
        mean = total[:d] / n
        scale = np.sqrt(np.maximum(total[d : 2 * d] / n - mean**2, 0.0))
        scale = np.where(scale > 1e-12, scale, 1.0)
        broadcast(ss, dict.fromkeys(sums.live, Scaling(mean, scale).pack()), Tag.SCALING)
        if local is not None:
            local.set_scaling(mean, scale)
    theta = opts.spec.init(d, opts.seed)
    try:
        history = _Rounds(opts).run(session, sums, theta, local)
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to report
            sums.close()
        raise
    sums.close()
    final = history.final_theta
    model = GlobalModel(
        opts.spec,
        columns,
        kinds,
        mean,
        scale,
        final,
        tuple(history.rows),
        history.stopped_by,
        history.dp_summary(),
    )
    return FedResult(model, local.holdout if local is not None else None)


def _agree_schema(
    s: Session, banks: Sequence[str], data: BankData | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    got = {b: Schema.unpack(s.recv(b, Tag.SCHEMA)) for b in banks}
    if data is not None:
        ref_name, ref = s.me, Schema(list(data.columns), list(data.kinds))
    else:
        ref_name, ref = banks[0], got[banks[0]]
    problem = ""
    for b, sch in got.items():
        problem = schema_difference(ref_name, ref, b, sch)
        if problem:
            break
    ok = SchemaOk([] if problem else ref.columns, problem).pack()
    broadcast(s, dict.fromkeys(banks, ok), Tag.SCHEMA_OK)
    if problem:
        raise ConfigError("fedavg", problem, "every bank must have the same columns and kinds")
    return tuple(ref.columns), tuple(ref.kinds)


def _tell(s: Session, banks: Sequence[str], tag: Tag, message: dict[str, Any]) -> None:
    """Tell the banks why training stopped, best effort (the error raised next is the
    one that counts; a bank that cannot be told stops on the aggregator's abort)."""
    with contextlib.suppress(Exception):
        broadcast(s, dict.fromkeys(banks, message), tag)


def schema_difference(ref_name: str, ref: Schema, name: str, other: Schema) -> str:
    """Why bank ``name``'s columns differ from ``ref_name``'s, or "" if they match."""
    theirs = dict(zip(other.columns, other.kinds, strict=True))
    mine = dict(zip(ref.columns, ref.kinds, strict=True))
    for c in ref.columns:
        if c not in theirs:
            return f"bank '{name}' lacks column '{c}' that '{ref_name}' has"
    for c in other.columns:
        if c not in mine:
            return f"bank '{name}' has column '{c}' that '{ref_name}' lacks"
    for c in ref.columns:
        if theirs[c] != mine[c]:
            return f"column '{c}' is {theirs[c]} at bank '{name}' but {mine[c]} at '{ref_name}'"
    return ""


class _Rounds:
    """The aggregator's training loop: the global model, the history, early stopping."""

    def __init__(self, opts: FedAvgOptions) -> None:
        self.opts = opts
        self.rows: list[dict[str, Any]] = []
        self.stopped_by = "rounds"
        self.best: tuple[float, int, FloatArray] | None = None
        self.final_theta = np.zeros(0)
        self.acc = dp.Accountant(opts.dp) if opts.dp is not None else None

    def dp_summary(self) -> dict[str, Any] | None:
        return self.acc.summary() if self.acc is not None else None

    def run(
        self, session: Session, sums: AggregatorSums, theta: FloatArray, local: _Local | None
    ) -> _Rounds:
        with ThreadPoolExecutor(1, thread_name_prefix="fedavg-train") as pool:
            return self._run(session, sums, theta, local, pool)

    def _run(
        self,
        session: Session,
        sums: AggregatorSums,
        theta: FloatArray,
        local: _Local | None,
        pool: ThreadPoolExecutor,
    ) -> _Rounds:
        o, p = self.opts, theta.size
        active = list(sums.live)
        last = o.rounds + (1 if o.early_stopping else 0)  # one more round scores the last model
        for r in range(1, last + 1):
            t0 = time.perf_counter()
            train = r <= o.rounds
            sr = session.sub(f"round{r}")
            planned = len(active) + (local is not None)
            msg = Model(r, theta, planned, train, False, []).pack()
            sending = post(sr, dict.fromkeys(active, msg), Tag.MODEL)  # no need to wait
            own = None  # the aggregator's own update, if it is a bank, trained meanwhile
            if local is not None:
                own = pool.submit(local.contribution, theta, train, planned).result
            try:
                total = sums.total(dims(p, o, train), own)
            except RoundAborted as e:  # the banks wait for the next model: they get why
                with contextlib.suppress(Exception):
                    sending.wait()
                stop = Model(r + 1, theta, 0, False, True, [], str(e)).pack()
                _tell(session.sub(f"round{r + 1}"), sums.waiting, Tag.MODEL, stop)
                raise
            sending.wait()
            dropped = [b for b in active if b not in sums.live]
            active = list(sums.live)
            row: dict[str, Any] = {"round": r, "banks": len(active) + (local is not None)}
            if dropped:
                row["dropped"] = dropped
            own_bank = local is not None
            theta = self._step(row, theta, total, train=train, planned=planned, own=own_bank, r=r)
            row["seconds"] = round(time.perf_counter() - t0, 4)
            self.rows.append(row)
            if self.stopped_by == "early_stopping":
                break
        self.final_theta = self.best[2] if self.best is not None else theta
        final = {"stopped_by": self.stopped_by, "dp": self.dp_summary()}
        sr = session.sub(f"round{len(self.rows) + 1}")
        final_msg = Model(len(self.rows) + 1, self.final_theta, 0, False, True, [*self.rows, final])
        broadcast(sr, dict.fromkeys(active, final_msg.pack()), Tag.MODEL)
        return self

    def _step(
        self,
        row: dict[str, Any],
        theta: FloatArray,
        total: FloatArray,
        *,
        train: bool,
        planned: int,
        own: bool,
        r: int,
    ) -> FloatArray:
        o, p = self.opts, theta.size
        if self.acc is not None:
            row["epsilon"] = self.acc.add_round(row["banks"], planned, known=int(own))
            step: FloatArray = theta + total[:p] / max(float(total[p]), 1.0)
            return step
        if train:
            n = total[p]
            row["train_loss"] = float(total[p + 1] / n)
            new: FloatArray = theta + total[:p] / n
        else:
            new = theta
        if o.early_stopping:
            vs, vw = total[-2], total[-1]
            loss = float(vs / vw) if vw > 0 else float("inf")
            row["valid_loss_before"] = loss  # of the model this round started from
            if self.best is None or loss < self.best[0] - 1e-12:
                self.best = (loss, r - 1, theta)
            elif r - 1 - self.best[1] >= o.early_stopping:
                self.stopped_by = "early_stopping"
            row["best_round"] = self.best[1]
        return new
