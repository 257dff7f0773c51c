"""The end of every epoch: convergence, the validation loss, the label holder's decision.

Early stopping needs a validation metric every epoch, and the obvious one (AUC on the
joint validation scores) needs every row's score at the label holder: a partner's
validation scores ``X_P w_P`` every epoch, from which a linear fit over a dozen epochs
recovers the partner's validation features. Veil instead computes the second-order
Taylor log-loss (the loss whose gradient the training uses), under the label holder's
key, so that only one scalar per epoch is ever decrypted:

    loss = (1/n) sum_i [ log 2 + (0.5 - y_i) z_i + z_i^2 / 8 ],   z = z_L + sum_P z_P
         = (1/n) [ own_L + sum_i a_i Z_i + sum_i Z_i^2 / 8 ]

with ``own_L = sum_i log 2 + (0.5 - y_i) z_L,i + z_L,i^2 / 8``, ``a = 0.5 - y + z_L / 4``
and ``Z = sum_P z_P``. Messages, per epoch (``[[.]]_L``: under the label holder's key;
partners in the hello's order P_1..P_k):
  P -> L     EPOCH_REPORT: whether its coefficients moved less than ``tol``.
  with a validation set:
  L -> P_1   VALID_RESIDUAL [[a]]_L
  P_j -> P_j+1  VALID_CHAIN  [[a + (z_1 + .. + z_j) / 4]]_L and [[t_1 + .. + t_j]]_L
  P_k -> L   VALID_LOSS [[t_1 + .. + t_k]]_L
  where ``t_j = [[a + (z_1 + .. + z_j-1) / 4]] . z_j + |z_j|^2 / 8`` (the square term a
  fresh encryption, so the ciphertext L decrypts is freshly randomised); the sum is
  ``sum_i a_i Z_i + |Z|^2 / 8``.
  L -> P     EPOCH_DECISION: stop, and whether this epoch is the best so far.
The validation set must have at least the policy's minimum batch of rows (one row would
make the loss a function of that row's score alone).

What each party learns: the label holder, the validation Taylor loss of each epoch
(one number); each partner, per epoch, whether it improved and whether training stops
(two bits). Nothing else: every vector crosses encrypted under the label holder's key
and only partners, who have no key to it, see those vectors. The AUC is not computed:
it needs the ranks of the joint scores, which would reveal them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from veil.crypto.he import EncryptedArray, HEPublicKey
from veil.errors import ProtocolError
from veil.messages import Fields
from veil.ml.lr._fields import CipherMessage, read_cipher
from veil.ml.lr._homomorphic import decrypt_bounded, encrypt
from veil.ml.lr._loop import Decision
from veil.ml.lr._math import FloatArray
from veil.ml.lr._options import LROptions
from veil.ml.lr._setup import Run, Tag
from veil.net.session import Session

VALID_BITS = 24
"""Significant bits of a partner's validation scores in the encrypted inner product."""


@dataclass(frozen=True)
class EpochReport:
    converged: bool

    def to_wire(self) -> dict[str, object]:
        return {"converged": self.converged}

    @classmethod
    def from_wire(cls, obj: object) -> EpochReport:
        return cls(Fields(Tag.EPOCH_REPORT, obj).get_bool("converged"))


@dataclass(frozen=True)
class EpochDecision:
    stop: bool
    keep: bool

    def to_wire(self) -> dict[str, object]:
        return {"stop": self.stop, "keep": self.keep}

    @classmethod
    def from_wire(cls, obj: object) -> EpochDecision:
        f = Fields(Tag.EPOCH_DECISION, obj)
        return cls(f.get_bool("stop"), f.get_bool("keep"))


@dataclass(frozen=True)
class ValidChain:
    vec: EncryptedArray
    total: EncryptedArray

    def to_wire(self) -> dict[str, object]:
        return {"vec": self.vec.to_wire(), "total": self.total.to_wire()}

    @classmethod
    def from_wire(cls, obj: object, pk: HEPublicKey, n: int) -> ValidChain:
        f = Fields(Tag.VALID_CHAIN, obj)
        return cls(read_cipher(f, "vec", pk, n), read_cipher(f, "total", pk, 1))


def valid_loss_label_holder(es: Session, run: Run, yv: FloatArray, zv: FloatArray) -> float:
    """L: the validation Taylor log-loss per row at the current coefficients (``zv``: the
    label holder's own validation scores)."""
    pk, sk = run.keys.pk, run.keys.sk
    a = 0.5 - yv + 0.25 * zv
    es.send(run.partners[0], Tag.VALID_RESIDUAL, CipherMessage(encrypt(pk, a)).to_wire())
    c = CipherMessage.from_wire(es.recv(run.partners[-1], Tag.VALID_LOSS), Tag.VALID_LOSS, pk, 1)
    try:
        t = decrypt_bounded(sk, c.ct)[0] / 2.0**c.ct.frac_bits
    except ProtocolError as e:
        raise ProtocolError(f"{Tag.VALID_LOSS}.ct: {e}") from e
    own = len(yv) * math.log(2.0) + float((0.5 - yv) @ zv) + float(zv @ zv) / 8
    return (own + t) / len(yv)


def valid_loss_partner(es: Session, run: Run, zv: FloatArray) -> None:
    """P: add this partner's terms to the encrypted loss and pass it on."""
    lh, j = run.label_holder, run.partners.index(run.me)
    pk = run.peer_keys[lh]
    n = len(zv)
    total: EncryptedArray | None = None
    if j == 0:
        msg = es.recv(lh, Tag.VALID_RESIDUAL)
        vec = CipherMessage.from_wire(msg, Tag.VALID_RESIDUAL, pk, n).ct
    else:
        chain = ValidChain.from_wire(es.recv(run.partners[j - 1], Tag.VALID_CHAIN), pk, n)
        vec, total = chain.vec, chain.total
    term = vec.matmul(zv.reshape(-1, 1), bits=VALID_BITS) + encrypt(pk, [float(zv @ zv) / 8])
    total = term if total is None else total + term
    if j + 1 == len(run.partners):
        es.send(lh, Tag.VALID_LOSS, CipherMessage(total).to_wire())
    else:
        nxt = ValidChain(vec + 0.25 * zv, total)
        es.send(run.partners[j + 1], Tag.VALID_CHAIN, nxt.to_wire())


class LabelHolderEpochs:
    """L's end of an epoch: the partners' reports, the validation loss, the decision."""

    def __init__(self, run: Run, opts: LROptions, Xv: FloatArray | None, yv: FloatArray | None):
        self.run, self.opts, self.Xv, self.yv = run, opts, Xv, yv
        self.best, self.since_best = math.inf, 0

    def __call__(self, epoch: int, es: Session, w: FloatArray, moved: float) -> Decision:
        partners, opts = self.run.partners, self.opts
        reports = [EpochReport.from_wire(es.recv(p, Tag.EPOCH_REPORT)) for p in partners]
        converged = opts.tol > 0 and moved < opts.tol and all(r.converged for r in reports)
        keep, stop, by, loss = True, converged, "epochs", None
        if self.Xv is not None and self.yv is not None:
            loss = valid_loss_label_holder(es, self.run, self.yv, self.Xv @ w)
            keep = loss < self.best
            self.best, self.since_best = (loss, 0) if keep else (self.best, self.since_best + 1)
            if opts.patience > 0 and self.since_best >= opts.patience:
                stop, by = True, "early_stopping"
        if converged:
            by = "tol"
        for p in partners:
            es.send(p, Tag.EPOCH_DECISION, EpochDecision(stop, keep).to_wire())
        return Decision(stop, keep, by, loss)


class PartnerEpochs:
    """A partner's end of an epoch: its report, its part of the loss, L's decision."""

    def __init__(self, run: Run, opts: LROptions, Xv: FloatArray | None):
        self.run, self.opts, self.Xv = run, opts, Xv

    def __call__(self, epoch: int, es: Session, w: FloatArray, moved: float) -> Decision:
        lh, tol = self.run.label_holder, self.opts.tol
        es.send(lh, Tag.EPOCH_REPORT, EpochReport(bool(tol > 0 and moved < tol)).to_wire())
        if self.Xv is not None:
            valid_loss_partner(es, self.run, np.asarray(self.Xv @ w, dtype=np.float64))
        d = EpochDecision.from_wire(es.recv(lh, Tag.EPOCH_DECISION))
        return Decision(d.stop, d.keep, "label_holder")
