"""Secret-sharing vertical logistic regression (SS-LR) over :mod:`veil.mpc`.

Paper: Mohassel and Zhang, "SecureML: A System for Scalable Privacy-Preserving Machine
Learning" (IEEE S&P 2017): mini-batch SGD on additive shares over Z_2^64, Beaver
(matrix) triples from an offline phase, the data matrix masked once and reused, local
probabilistic truncation, a polynomial sigmoid. SecretFlow's SS-LR (SPU, SEMI2K) is
the same design.

Roles: ``label_holder`` L (labels, block X_L and the intercept; compute party 0) and
one or more partners (blocks X_P). The first partner is compute party 1; any further
partner only inputs its block and receives its coefficients. The triples come from
``options.dealer`` (a party with no data, :func:`run_dealer`) or, without one, from L
and the first partner under Paillier/OU (:mod:`veil.mpc.he_triples`).

Flow:
  1. L -> partners, dealer  ``ss_hello``: options digest, row counts and id digests
     (training and validation rows),
     batch seed, model id, the data and compute parties.
     partners -> L  ``ss_ready``: ok (or why not) and the block width;
     L -> partners  ``ss_start``: every block's width (or the error that stops the run);
     at the end L -> further partners ``ss_done``: the epochs run and why it stopped.
  2. Offline: both compute parties build the same plan from these public numbers
     (:func:`build_plan`); the dealer or the HE protocol fills their triple stores.
  3. Inputs: every block is masked once (``X_p - M_p`` opened between L and P1; a further
     partner first secret-shares its block to them); L shares y (and, with class
     weights, ``s`` and ``s * y``) by sending a seed.
  4. Per step on batch B (a fixed partition of the rows, visited in a fresh order each
     epoch): ``w -= lr_e (X_B^T d / |B| + alpha * w)`` (no penalty on the intercept),
     ``d = sigmoid(X_B w) - y_B`` (times the class weights). :mod:`veil.ml.ss_lr_fit`
     computes it through the scores (``z``: 2 rounds + the sigmoid's and the weights'
     products) or, for the ``linear`` sigmoid without class weights, from each batch's
     shared Gram matrix (``gram``: 1 round a step, the batch size no longer matters).
  5. Each party receives both shares of its own block of ``w``.

What each party learns (semi-honest, the dealer colludes with nobody):
  - during training: nothing but uniform words (opened ``value - mask``); no gradient,
    residual, score, label or weight is opened. Public to all: row count, block widths,
    epochs, batch schedule. The dealer learns only these.
  - per epoch, only with ``patience`` (a validation set) or ``tol``
    (:mod:`veil.ml.ss_lr_epochs`): the label holder the validation Taylor log-loss and
    the norm of the epoch's step (one number each), the first partner two bits (stop,
    keep); both computed on shares, no per-row value is revealed. Public: the number of
    validation rows and the epoch training stopped at.
  - at the end: each party its own coefficients (L also the intercept): what its model
    file holds and what joint prediction (:func:`veil.ml.lr.predict_label_holder`) needs.
Batches obey ``policy.min_batch(widest block)`` like the HE protocol's, although no
batch gradient is revealed here.

Fixed point: features carry ``feature_frac_bits`` (f_x), everything else ``frac_bits``
(f). ``X w`` and ``X^T d`` carry f + f_x bits and are truncated by f_x (SecureML's local
truncation). A truncation of a value below 2^v (with its fraction bits) fails with
probability 2^(v + 1 - 64); each party checks before sharing that its largest batch
gradient ``|B| * max|x_j| * 2`` (``|d| <= 2``, times the largest class weight) stays
within ``64 - 1 - TRUNC_SAFETY_BITS`` bits, and otherwise stops with an error naming
the column. Typical values are far below that worst case.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from enum import StrEnum
from typing import Any

import numpy as np

from veil.errors import ConfigError, ProtocolError
from veil.messages import Fields
from veil.ml.labels import check_labels, sample_weights
from veil.ml.lr import PartyData, PartyModel
from veil.ml.ss_lr_data import TRUNC_SAFETY_BITS, check_range, check_valid_range, prepare, scaled
from veil.ml.ss_lr_fit import FitReport, RunParams, build_plan, fit, partition, visit_order
from veil.ml.ss_lr_options import SSLROptions
from veil.mpc import triples
from veil.mpc.channel import expect_field, expect_int
from veil.mpc.engine import Engine, receive_output, send_input
from veil.mpc.he_triples import he_store
from veil.mpc.ring import FixedPoint, Share
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy

__all__ = [
    "LABEL_HOLDER",
    "PARTNER",
    "TRUNC_SAFETY_BITS",
    "SSLROptions",
    "SSLRReport",
    "Tag",
    "build_plan",
    "partition",
    "run_dealer",
    "train_label_holder",
    "train_partner",
    "visit_order",
]

LABEL_HOLDER = "label_holder"
PARTNER = "partner"


class Tag(StrEnum):
    """Messages of SS-LR beyond those of :mod:`veil.mpc`."""

    HELLO = "ss_hello"  # L -> partners, dealer
    READY = "ss_ready"  # partner -> L
    START = "ss_start"  # L -> partners
    DONE = "ss_done"  # L -> further partners (input parties): epochs run, why it stopped


SSLRReport = FitReport
"""What a party knows about its run (as the HE protocol's report, plus MPC counts)."""


# -- the roles ---------------------------------------------------------------------------
def train_label_holder(
    s: Session,
    data: PartyData,
    opts: SSLROptions,
    valid: PartyData | None = None,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> tuple[PartyModel, SSLRReport]:
    """Train as the label holder with every other party of ``s`` (but the dealer) as a
    partner; returns this party's model part (with the intercept). ``valid``: the
    validation rows (every partner passes its block of the same rows) for early
    stopping (``opts.patience``; :mod:`veil.ml.ss_lr_epochs`)."""
    if data.y is None:
        raise ConfigError("label_holder.label", "the label holder has no label column")
    if opts.dealer == s.me:
        raise ConfigError("hetero_lr.dealer", f"'{s.me}' is the label holder", "name a third party")
    if opts.dealer is not None and opts.dealer not in s.parties:
        raise ConfigError("hetero_lr.dealer", f"'{opts.dealer}' is not in the job")
    if opts.patience > 0 and valid is None:
        raise ConfigError("hetero_lr.patience", "early stopping needs a validation set")
    y = check_labels(data.y, "label_holder.label").astype(np.float64)
    yv = None
    if valid is not None:
        if valid.y is None:
            raise ConfigError("label_holder.valid.label", "the validation rows have no labels")
        yv = check_labels(valid.y, "label_holder.valid.label").astype(np.float64)
    sw = sample_weights(y, opts.class_weight)
    X, mean, std = prepare(data, opts, "label_holder", opts.fit_intercept)
    Xv = None if valid is None else scaled(valid, opts, mean, std, "label_holder.valid")
    run = _hello(s, (data, valid), opts, (X, Xv), float(sw.max()), policy)
    e, report = _engine(s, 0, run, opts, policy)
    fx = FixedPoint(opts.feature_frac_bits)
    Xs = _block_shares(e, run, fx.encode(X), run.n)
    Xvs = None if Xv is None else _block_shares(e, run, fx.encode(Xv), run.n_valid)
    ys = e.share_input(e.fp.encode(y.reshape(-1, 1)))
    wts = None
    if opts.class_weight is not None:
        sws = e.share_input(e.fp.encode(sw.reshape(-1, 1)))
        wts = (sws, e.share_input(e.fp.encode((sw * y).reshape(-1, 1))))
    vs = None
    if Xvs is not None and yv is not None:
        vs = (Xvs, e.share_input(e.fp.encode(yv.reshape(-1, 1))), yv)
    mine = _reveal(e, run, fit(e, run, opts, Xs, ys, wts, report, vs, labels=y))
    for p in run.parties[2:]:
        s.send(p, Tag.DONE, {"epochs_run": report.epochs_run, "stopped_by": report.stopped_by})
    coef, icpt = (mine[:-1], float(mine[-1])) if opts.fit_intercept else (mine, 0.0)
    model = _model(run, opts, LABEL_HOLDER, data, coef, icpt, me=s.me, scaling=(mean, std))
    return model, report


def _hello(  # noqa: PLR0917
    s: Session,
    rows: tuple[PartyData, PartyData | None],
    opts: SSLROptions,
    blocks: tuple[np.ndarray, np.ndarray | None],
    weight: float,
    policy: SecurityPolicy,
) -> RunParams:
    """L's side of step 1: agree on the run's public parameters with every partner
    (every party stops, with the reason, if any party's input is refused)."""
    data, valid = rows
    X, Xv = blocks
    partners = [p for p in s.peers() if p != opts.dealer]
    if not partners and opts.dealer:
        raise ConfigError(
            "hetero_lr.dealer",
            f"'{opts.dealer}' is the only other party, so it would be a data party too",
            "the dealer must be a third party without data",
        )
    if not partners:
        raise ConfigError("parties", "SS-LR needs at least one partner", "add a partner")
    seed = opts.seed if opts.seed is not None else secrets.randbits(62)
    # As the HE protocol's: from the options, the rows and the seed (a rerun with the
    # same seed names its model alike).
    key = f"{opts.digest()}|{data.ids_digest()}|{seed}".encode()
    model_id = hashlib.sha256(key).hexdigest()[:32]
    n_valid = 0 if valid is None else valid.n_rows
    hello = {
        "digest": opts.digest(),
        "n": data.n_rows,
        "ids": data.ids_digest(),
        "n_valid": n_valid,
        "valid_ids": "" if valid is None else valid.ids_digest(),
        "seed": seed,
        "model_id": model_id,
        "parties": [s.me, *partners],
    }
    for p in [*partners, *([opts.dealer] if opts.dealer else [])]:
        s.send(p, Tag.HELLO, hello)
    widths: list[int] = [X.shape[1]]
    problems: list[str] = []
    mine: ConfigError | None = None
    try:
        check_range(X, data.feature_names, (data.n_rows, seed), opts, "label_holder", weight)
        if Xv is not None:
            check_valid_range(Xv, data.feature_names, opts, "label_holder.valid")
    except ConfigError as refused:
        mine, problems = refused, [str(refused)]
    for p in partners:
        ready = s.recv(p, Tag.READY)
        if not isinstance(ready, dict) or not ready.get("ok"):
            why = ready.get("error") if isinstance(ready, dict) else "malformed ready"
            problems.append(f"partner '{p}': {why}")
        else:
            widths.append(expect_int(ready.get("width"), Tag.READY, "width", 1))
    if len(problems) == (mine is not None):
        smallest = min(len(b) for b in partition(data.n_rows, opts.batch_size, seed))
        floor = policy.min_batch(max(widths))
        if smallest < floor:
            problems.append(
                f"batches of {smallest} rows are below the policy minimum {floor} for "
                f"{max(widths)} features; use batch_size >= {floor} (or 0: full batch)"
            )
        if valid is not None and n_valid < floor:
            problems.append(
                f"the validation set has {n_valid} rows, below the policy minimum {floor} "
                f"for {max(widths)} features; hold out more rows (validation_every)"
            )
    for p in partners:
        s.send(p, Tag.START, {"widths": widths, "error": "; ".join(problems)})
    if mine is not None:
        raise mine
    if problems:
        raise ConfigError("hetero_lr", "; ".join(problems), "fix the inputs named")
    return RunParams(data.n_rows, seed, model_id, (s.me, *partners), tuple(widths), n_valid)


def train_partner(
    s: Session,
    data: PartyData,
    opts: SSLROptions,
    valid: PartyData | None = None,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> tuple[PartyModel, SSLRReport]:
    """Train as a partner; returns this party's model part (``valid``: its block of the
    label holder's validation rows, with early stopping)."""
    run, X, Xv, scaling = _join(s, data, valid, opts)
    fx = FixedPoint(opts.feature_frac_bits)
    me = run.parties.index(s.me)
    if me >= 2:  # an input party: share the blocks, receive the coefficients
        report = SSLRReport(epochs_run=opts.epochs, triples="dealer" if opts.dealer else opts.he)
        send_input(s, fx.encode(X), run.compute)
        if Xv is not None:
            send_input(s, fx.encode(Xv), run.compute)
        mine = (
            FixedPoint(opts.frac_bits)
            .decode(receive_output(s, run.compute, (run.widths[me], 1)))
            .ravel()
        )
        done = Fields(Tag.DONE, s.recv(run.parties[0], Tag.DONE))
        report.epochs_run = done.get_int("epochs_run", lo=1, hi=opts.epochs)
        report.stopped_by = done.get_str("stopped_by", max_len=32)
    else:
        e, report = _engine(s, 1, run, opts, policy)
        Xs = _block_shares(e, run, fx.encode(X), run.n)
        Xvs = None if Xv is None else _block_shares(e, run, fx.encode(Xv), run.n_valid)
        ys = e.receive_input((run.n, 1))
        wts = None
        if opts.class_weight is not None:
            wts = (e.receive_input((run.n, 1)), e.receive_input((run.n, 1)))
        vs = None if Xvs is None else (Xvs, e.receive_input((run.n_valid, 1)), None)
        mine = _reveal(e, run, fit(e, run, opts, Xs, ys, wts, report, vs))
    model = _model(run, opts, PARTNER, data, mine, None, me=s.me, scaling=scaling)
    return model, report


def _join(
    s: Session, data: PartyData, valid: PartyData | None, opts: SSLROptions
) -> tuple[RunParams, np.ndarray, np.ndarray | None, tuple[np.ndarray | None, np.ndarray | None]]:
    """A partner's side of step 1: check the hello, send ready, receive start."""
    lh = s.party_of(LABEL_HOLDER)
    hello = s.recv(lh, Tag.HELLO)
    seed = expect_int(expect_field(hello, Tag.HELLO, "seed"), Tag.HELLO, "seed")
    n_valid = expect_int(expect_field(hello, Tag.HELLO, "n_valid"), Tag.HELLO, "n_valid")
    model_id = expect_field(hello, Tag.HELLO, "model_id")
    parties = expect_field(hello, Tag.HELLO, "parties")
    if not isinstance(parties, list) or len(parties) < 2 or not isinstance(model_id, str):
        raise ProtocolError(f"{Tag.HELLO}.parties: expected the list of data parties")
    problem = _check_hello(hello, s.me, (data, valid), opts)
    X = Xv = mean = std = None
    if problem is None:
        try:
            X, mean, std = prepare(data, opts, f"partner[{s.me}]", False)
            check_range(X, data.feature_names, (data.n_rows, seed), opts, f"partner[{s.me}]")
            if valid is not None:
                Xv = scaled(valid, opts, mean, std, f"partner[{s.me}].valid")
                check_valid_range(Xv, data.feature_names, opts, f"partner[{s.me}].valid")
        except ConfigError as err:
            problem = str(err)
    width = 0 if X is None else X.shape[1]
    s.send(lh, Tag.READY, {"ok": problem is None, "error": problem, "width": width})
    if problem is not None or X is None:
        raise ConfigError(f"partner[{s.me}]", problem or "cannot train")
    start = s.recv(lh, Tag.START)
    if expect_field(start, Tag.START, "error"):
        raise ConfigError("hetero_lr", str(start["error"]), "fix the inputs named")
    widths = expect_field(start, Tag.START, "widths")
    if not isinstance(widths, list) or len(widths) != len(parties):
        raise ProtocolError(f"{Tag.START}.widths: one width per data party expected")
    run = RunParams(
        data.n_rows,
        seed,
        model_id,
        tuple(str(p) for p in parties),
        tuple(expect_int(w, Tag.START, "widths", 1) for w in widths),
        n_valid,
    )
    return run, X, Xv, (mean, std)


def run_dealer(s: Session, opts: SSLROptions) -> triples.DealerReport:
    """The dealer's role: learn who computes from the hello, then serve the triples."""
    hello = s.recv(s.party_of(LABEL_HOLDER), Tag.HELLO)
    if opts.dealer != s.me:
        raise ConfigError("hetero_lr.dealer", f"names '{opts.dealer}', not this party '{s.me}'")
    if not isinstance(hello, dict) or hello.get("digest") != opts.digest():
        raise ConfigError("hetero_lr", "options differ from the label holder's", "use the same")
    parties = hello.get("parties")
    if not isinstance(parties, list) or len(parties) < 2 or s.me in parties:
        raise ConfigError("hetero_lr.dealer", f"'{s.me}' is also a data party", "name another")
    return triples.run_dealer(s, (str(parties[0]), str(parties[1])))


# -- pieces --------------------------------------------------------------------------
def _check_hello(
    hello: Any, me: str, rows: tuple[PartyData, PartyData | None], opts: SSLROptions
) -> str | None:
    """Why this partner cannot train with the label holder's parameters, or None."""
    data, valid = rows
    if not isinstance(hello, dict):
        return "malformed hello"
    if opts.dealer == me:
        return f"'{me}' is named the dealer but holds data; name a third party"
    if hello.get("digest") != opts.digest():
        return "options differ from the label holder's; give every party the same"
    if data.n_rows == 0:
        return "this partner has no rows; run PSI first"
    if hello.get("n") != data.n_rows or hello.get("ids") != data.ids_digest():
        return (
            f"training rows differ from the label holder's ({data.n_rows} vs {hello.get('n')}"
            " rows or another id order); run PSI and the same split first"
        )
    n_valid = 0 if valid is None else valid.n_rows
    valid_ids = "" if valid is None else valid.ids_digest()
    if hello.get("n_valid") != n_valid or hello.get("valid_ids") != valid_ids:
        return (
            f"validation rows differ from the label holder's ({n_valid} vs "
            f"{hello.get('n_valid')} rows or other ids); hold out the same rows"
        )
    if me not in (hello.get("parties") or []):
        return "this party is not a partner of the run"
    return None


def _engine(
    s: Session, me: int, run: RunParams, opts: SSLROptions, policy: SecurityPolicy
) -> tuple[Engine, SSLRReport]:
    t0 = time.perf_counter()
    plan = build_plan(run, opts)
    if opts.dealer is not None:
        store = triples.dealer_store(s, me, run.compute, opts.dealer, plan)
    else:
        store = he_store(
            s, me, run.compute, plan, scheme=opts.he, key_bits=opts.key_bits, policy=policy
        )
    report = SSLRReport(offline_seconds=time.perf_counter() - t0)
    report.triples = "dealer" if opts.dealer else str(opts.he)
    return Engine(s, run.compute, me, store, FixedPoint(opts.frac_bits)), report


def _block_shares(e: Engine, run: RunParams, mine: Share, n: int) -> Share:
    """This compute party's share of the joint feature matrix of ``n`` rows: its own
    block, zeros in the other's, and its shares of further partners' blocks."""
    out = np.zeros((n, sum(run.widths)), dtype=np.uint64)
    start = 0
    for i, (party, w) in enumerate(zip(run.parties, run.widths, strict=True)):
        if i == e.me:
            out[:, start : start + w] = mine
        elif i >= 2:
            out[:, start : start + w] = e.receive_input((n, w), frm=party)
        start += w
    return out


def _reveal(e: Engine, run: RunParams, w: Share) -> np.ndarray:
    """Each data party learns its own block of the weights; returns this party's."""
    mine = None
    start = 0
    for party, width in zip(run.parties, run.widths, strict=True):
        got = e.reveal_to(party, w[start : start + width])
        if got is not None:
            mine = e.fp.decode(got).ravel()
        start += width
    assert mine is not None
    return mine


def _model(  # noqa: PLR0917
    run: RunParams,
    opts: SSLROptions,
    role: str,
    data: PartyData,
    coef: np.ndarray,
    intercept: float | None,
    *,
    me: str,
    scaling: tuple[np.ndarray | None, np.ndarray | None],
) -> PartyModel:
    mean, std = scaling
    return PartyModel(
        model_id=run.model_id,
        role=role,
        party=me,
        feature_names=data.feature_names,
        coef=np.asarray(coef, dtype=np.float64),
        intercept=intercept,
        mean=mean,
        std=std,
        clip=opts.clip,
        parties=run.parties,
        options={**opts.to_json(), "protocol": "ss"},
    )
