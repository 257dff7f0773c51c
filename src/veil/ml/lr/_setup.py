"""The start of a vertical LR run: hello, keys, block widths and the batch rule.

Messages (scope of the run; ``L`` the label holder, ``P`` each partner):
  1. L -> P  HELLO: options digest, row counts and id digests, the partner list, the
     protocol, L's block width and public key ``pk_L``, the model id.
  2. P -> L  READY: its checks passed (or why not), its block width and ``pk_P``.
  3. L -> P  START: go (or why not), the widest block ``f`` and the smallest batch the
     run uses, ``policy.min_batch(f)``, and the statistical security parameter.
What crosses: column counts, row counts, digests and public keys, all public to the
parties of a job; no data. The batch order is drawn from ``LROptions.seed``, which every
party has (the digest proves it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from veil.crypto.he import HEPublicKey, HESecretKey
from veil.errors import ConfigError, ProtocolError
from veil.messages import MAX_TEXT, Fields
from veil.ml.lr._homomorphic import keygen, peer_key
from veil.ml.lr._math import FloatArray, clip_block, prepare_block
from veil.ml.lr._model import PartyData
from veil.ml.lr._options import LROptions, LRProtocol
from veil.net.session import Session
from veil.policy import SecurityPolicy

LABEL_HOLDER = "label_holder"
PARTNER = "partner"
MAX_PARTIES = 256
MAX_ROWS = 1 << 40
MAX_WIDTH = 1 << 20


class Tag(StrEnum):
    """Messages of a run's start and of its epochs (the batch protocols have their own)."""

    HELLO = "hello"  # L -> P: run parameters and pk_L
    READY = "ready"  # P -> L: checks passed (or the reason not), width and pk_P
    START = "start"  # L -> P: go (or why not), widest block, smallest batch
    EPOCH_REPORT = "epoch_report"  # P -> L: converged flag
    VALID_RESIDUAL = "valid_residual"  # L -> first P: [[0.5 - y + z_L / 4]]_L
    VALID_CHAIN = "valid_chain"  # P -> next P: running vector and loss term, under pk_L
    VALID_LOSS = "valid_loss"  # last P -> L: [[partners' part of the loss]]_L
    EPOCH_DECISION = "epoch_decision"  # L -> P: stop / keep


@dataclass(frozen=True)
class Keys:
    pk: HEPublicKey
    sk: HESecretKey


@dataclass
class Block:
    """A party's prepared training state (the label holder's with its intercept column)."""

    X: FloatArray
    w: FloatArray
    n_penalised: int
    valid: FloatArray | None = None

    @property
    def width(self) -> int:
        return int(self.X.shape[1])


@dataclass(frozen=True)
class Run:
    """What a party knows once the start is done."""

    session: Session
    me: str
    label_holder: str
    partners: tuple[str, ...]
    proto: LRProtocol
    keys: Keys
    peer_keys: dict[str, HEPublicKey]  # L: each partner's; P: the label holder's
    widths: dict[str, int]  # L: every party's; P: its own and the label holder's
    min_batch: int
    stat_sec: int
    model_id: str


@dataclass(frozen=True)
class Hello:
    digest: str
    n: int
    ids: str
    n_valid: int
    valid_ids: str
    model_id: str
    partners: tuple[str, ...]
    protocol: LRProtocol
    width: int
    pk: HEPublicKey

    def to_wire(self) -> dict[str, object]:
        return {
            "digest": self.digest,
            "n": self.n,
            "ids": self.ids,
            "n_valid": self.n_valid,
            "valid_ids": self.valid_ids,
            "model_id": self.model_id,
            "partners": list(self.partners),
            "protocol": str(self.protocol),
            "width": self.width,
            "pk": self.pk.to_wire(),
        }

    @classmethod
    def from_wire(cls, obj: object, opts: LROptions, policy: SecurityPolicy) -> Hello:
        f = Fields(Tag.HELLO, obj)
        proto = f.get_str("protocol", max_len=MAX_TEXT)
        if proto not in {str(p) for p in LRProtocol} - {str(LRProtocol.AUTO)}:
            f.fail("protocol", f"unknown protocol {proto!r}")
        try:
            pk = peer_key(f.get_dict("pk"), opts.scheme, opts.key_bits, policy)
        except ProtocolError as e:
            f.fail("pk", str(e))
        return cls(
            digest=f.get_str("digest", max_len=MAX_TEXT),
            n=f.get_int("n", lo=1, hi=MAX_ROWS),
            ids=f.get_str("ids", max_len=MAX_TEXT),
            n_valid=f.get_int("n_valid", lo=0, hi=MAX_ROWS),
            valid_ids=f.get_str("valid_ids", max_len=MAX_TEXT),
            model_id=f.get_str("model_id", max_len=MAX_TEXT),
            partners=f.get_strs("partners", max_items=MAX_PARTIES),
            protocol=LRProtocol(proto),
            width=f.get_int("width", lo=1, hi=MAX_WIDTH),
            pk=pk,
        )


@dataclass(frozen=True)
class Ready:
    ok: bool
    error: str = ""
    width: int = 0
    pk: HEPublicKey | None = None

    def to_wire(self) -> dict[str, object]:
        out: dict[str, object] = {"ok": self.ok, "error": self.error}
        if self.ok and self.pk is not None:
            out |= {"width": self.width, "pk": self.pk.to_wire()}
        return out

    @classmethod
    def from_wire(cls, obj: object, opts: LROptions, policy: SecurityPolicy) -> Ready:
        f = Fields(Tag.READY, obj)
        if not f.get_bool("ok"):
            return cls(False, f.get_str("error", max_len=MAX_TEXT))
        try:
            pk = peer_key(f.get_dict("pk"), opts.scheme, opts.key_bits, policy)
        except ProtocolError as e:
            f.fail("pk", str(e))
        return cls(True, "", f.get_int("width", lo=1, hi=MAX_WIDTH), pk)


@dataclass(frozen=True)
class Start:
    ok: bool
    field: str = ""
    problem: str = ""
    fix: str = ""
    max_width: int = 0
    min_batch: int = 0
    stat_sec: int = 0

    def to_wire(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "field": self.field,
            "problem": self.problem,
            "fix": self.fix,
            "max_width": self.max_width,
            "min_batch": self.min_batch,
            "stat_sec": self.stat_sec,
        }

    @classmethod
    def from_wire(cls, obj: object) -> Start:
        f = Fields(Tag.START, obj)
        ok = f.get_bool("ok")
        return cls(
            ok,
            f.get_str("field", max_len=MAX_TEXT),
            f.get_str("problem", max_len=MAX_TEXT),
            f.get_str("fix", max_len=MAX_TEXT),
            f.get_int("max_width", lo=1 if ok else 0, hi=MAX_WIDTH),
            f.get_int("min_batch", lo=1 if ok else 0, hi=MAX_ROWS),
            f.get_int("stat_sec", lo=1 if ok else 0, hi=256),
        )


def resolve_protocol(opts: LROptions, n_partners: int) -> LRProtocol:
    """The protocol a run uses: ``auto`` picks ``gram`` for one partner without class
    weights, else ``he``; an explicit ``gram`` outside that case is an error."""
    fits = n_partners == 1 and opts.class_weight is None
    if opts.protocol is LRProtocol.GRAM and not fits:
        raise ConfigError(
            "hetero_lr.protocol",
            "gram needs exactly one partner and no class_weight",
            "use protocol: he (or auto)",
        )
    if opts.protocol is LRProtocol.AUTO:
        return LRProtocol.GRAM if fits else LRProtocol.RESIDUALS
    return opts.protocol


def check_batches(
    n: int, n_valid: int, opts: LROptions, policy: SecurityPolicy, max_width: int
) -> int:
    """The smallest batch the run may use, or a :class:`ConfigError`: a requested batch
    below it, or too few training or validation rows for even one such batch."""
    least = policy.min_batch(max_width)
    why = f"the minimum for a widest block of {max_width} columns under policy '{policy.name}'"
    if 0 < opts.batch_size < least:
        raise ConfigError(
            "hetero_lr.batch_size",
            f"{opts.batch_size} rows is below {least}, {why}: a smaller batch's gradient "
            "gives away single rows' labels or scores",
            f"use batch_size: {least} or more (0 = full batch)",
        )
    if n < least:
        raise ConfigError(
            "hetero_lr.batch_size", f"only {n} training rows, below {least}, {why}", "add rows"
        )
    if 0 < n_valid < least:
        raise ConfigError(
            "hetero_lr.validation",
            f"only {n_valid} validation rows, below {least}, {why}",
            "hold out more rows (a smaller validation_every) or turn early stopping off",
        )
    return least


def prepare(
    data: PartyData, valid: PartyData | None, opts: LROptions, where: str, intercept: bool
) -> tuple[Block, FloatArray | None, FloatArray | None]:
    """A party's scaled and clipped block (and validation block), with its scaling."""
    X, mean, std = prepare_block(data.X, data.feature_names, opts, where)
    Xv = None
    if valid is not None:
        if valid.feature_names != data.feature_names:
            raise ConfigError(f"{where}.valid", "validation columns differ from training columns")
        Xv = np.asarray(valid.X, dtype=np.float64)
        if mean is not None and std is not None:
            Xv = (Xv - mean) / std
        Xv = clip_block(Xv, opts.clip)
    k = X.shape[1]
    if intercept:
        X = np.hstack([X, np.ones((len(X), 1))])
        if Xv is not None:
            Xv = np.hstack([Xv, np.ones((len(Xv), 1))])
    return Block(X, np.zeros(X.shape[1]), k, Xv), mean, std


def setup_label_holder(
    s: Session,
    data: PartyData,
    valid: PartyData | None,
    opts: LROptions,
    *,
    blk: Block,
    policy: SecurityPolicy,
) -> Run:
    """L's side of the start; raises :class:`ConfigError` (after telling the partners)
    if any party's input or the batch rule does not allow the run."""
    partners = tuple(s.peers())
    if not partners:
        raise ConfigError("parties", "vertical LR needs at least one partner")
    proto = resolve_protocol(opts, len(partners))
    keys = Keys(*keygen(opts.scheme, opts.key_bits, policy))
    n_valid = 0 if valid is None else valid.n_rows
    hello = Hello(
        digest=opts.digest(),
        n=data.n_rows,
        ids=data.ids_digest(),
        n_valid=n_valid,
        valid_ids="" if valid is None else valid.ids_digest(),
        model_id=opts.digest() + data.ids_digest(),  # same job, same data: same model file
        partners=partners,
        protocol=proto,
        width=blk.width,
        pk=keys.pk,
    )
    for p in partners:
        s.send(p, Tag.HELLO, hello.to_wire())
    readies = {p: Ready.from_wire(s.recv(p, Tag.READY), opts, policy) for p in partners}
    failed = [p for p, r in readies.items() if not r.ok]
    widths = {s.me: blk.width, **{p: r.width for p, r in readies.items()}}
    err: ConfigError | None = None
    least = 0
    if failed:
        err = ConfigError(
            f"partner[{failed[0]}]", readies[failed[0]].error, "fix the partner's input"
        )
    else:
        try:
            least = check_batches(data.n_rows, n_valid, opts, policy, max(widths.values()))
        except ConfigError as e:
            err = e
    start = Start(
        ok=err is None,
        field="" if err is None else err.field,
        problem="" if err is None else err.problem,
        fix="" if err is None else err.fix,
        max_width=max(widths.values()),
        min_batch=least,
        stat_sec=policy.stat_sec,
    )
    for p in partners:
        if readies[p].ok:
            s.send(p, Tag.START, start.to_wire())
    if err is not None:
        raise err
    peer_keys = {p: r.pk for p, r in readies.items() if r.pk is not None}
    return Run(
        s, s.me, s.me, partners, proto, keys, peer_keys, widths, least, policy.stat_sec,
        hello.model_id,
    )  # fmt: skip


def _check_hello(
    hello: Hello, data: PartyData, valid: PartyData | None, opts: LROptions, me: str
) -> str | None:
    """Why this partner cannot train with the label holder's parameters, or None."""
    if hello.digest != opts.digest():
        return "hetero_lr options differ from the label holder's; give every party the same"
    if me not in hello.partners:
        return f"the label holder does not list '{me}' as a partner"
    try:
        want = resolve_protocol(opts, len(hello.partners))
    except ConfigError as e:
        return str(e)
    if hello.protocol is not want:
        return f"protocol {str(hello.protocol)!r} differs from this party's {str(want)!r}"
    if hello.n != data.n_rows or hello.ids != data.ids_digest():
        return (
            f"training rows differ from the label holder's ({data.n_rows} vs {hello.n}"
            " rows or a different id order); run PSI and the same split first"
        )
    n_valid = 0 if valid is None else valid.n_rows
    if hello.n_valid != n_valid or (valid is not None and hello.valid_ids != valid.ids_digest()):
        return "validation rows differ from the label holder's"
    return None


def setup_partner(
    s: Session,
    data: PartyData,
    valid: PartyData | None,
    opts: LROptions,
    policy: SecurityPolicy,
) -> tuple[Run, Block, FloatArray | None, FloatArray | None]:
    """A partner's side of the start: its checks, its block and keys, the agreed rule."""
    lh = s.party_of(LABEL_HOLDER)
    where = f"partner[{s.me}]"
    hello = Hello.from_wire(s.recv(lh, Tag.HELLO), opts, policy)
    error = _check_hello(hello, data, valid, opts, s.me)
    if error is None:
        try:
            blk, mean, std = prepare(data, valid, opts, where, False)
            keys = Keys(*keygen(opts.scheme, opts.key_bits, policy))
        except ConfigError as e:
            error = str(e)
    if error is not None:
        s.send(lh, Tag.READY, Ready(False, error).to_wire())
        raise ConfigError(where, error)
    s.send(lh, Tag.READY, Ready(True, "", blk.width, keys.pk).to_wire())
    start = Start.from_wire(s.recv(lh, Tag.START))
    if not start.ok:
        raise ConfigError(start.field or where, start.problem, start.fix)
    widths = {lh: hello.width, s.me: blk.width}
    if start.max_width < max(widths.values()) or start.stat_sec < policy.stat_sec:
        raise ProtocolError(f"{Tag.START}: widest block or stat_sec below this party's")
    n_valid = 0 if valid is None else valid.n_rows
    least = check_batches(data.n_rows, n_valid, opts, policy, start.max_width)
    if start.min_batch < least:
        raise ProtocolError(f"{Tag.START}.min_batch: {start.min_batch} is below {least}")
    run = Run(
        s, s.me, lh, hello.partners, hello.protocol, keys, {lh: hello.pk}, widths,
        start.min_batch, start.stat_sec, hello.model_id,
    )  # fmt: skip
    return run, blk, mean, std
