"""The ``he`` protocol of vertical LR: encrypted residuals and scores every batch.

Papers: Hardy et al. 2017, "Private federated learning on vertically partitioned data
via entity resolution and additively homomorphic encryption" (Taylor loss, masked
gradients); Yang et al. 2019, "Parallel distributed logistic regression for vertical
federated learning without third-party coordinator" (each party owns its key pair, no
arbiter). Any number of partners; class weights ``s``.

Per mini-batch B (keys: ``pk_L`` the label holder's, ``pk_P`` partner P's), with the
Taylor residual ``d = s (0.25 z + 0.5 - y)``, ``z = z_L + sum_P z_P``, ``z_p = X_p w_p``:
  1. L -> P  ENC_RESIDUAL [[s(0.25 z_L + 0.5 - y)]]_L on B    (encrypted once for all P)
     P -> L  ENC_SCORE [[0.25 z_P]]_P on B
     P -> P' ENC_SCORE_X [[0.25 z_P]]_L (or [[s]]_L * 0.25 z_P)  (only with >= 2 partners)
  2. P: [[s d']]_L = step-1 vector + other partners' terms (+ [[s]]_L * 0.25 z_P with
     class weights; without, P's own term stays out of d': X_P^T 0.25 z_P is part of
     its plaintext part in step 3);
     P -> L  MASKED_GRAD [[X_P^T s d']]_L + r_P                 (r_P uniform mask)
     L: [[X_L^T s u_P]]_P = (s X_L)^T [[0.25 z_P]]_P;  L -> P  MASKED_GRAD that + r_L
  3. each key owner decrypts the masked vector it received and returns it (UNMASKED);
     each party removes its mask, adds its plaintext part, takes a gradient step.
  Once, with class weights: L -> P  WEIGHTS [[s]]_L over all training rows.
  Offline/online: after its step-1 encryption each party makes the randomisers of its
  next batch's encryption in the background, while it waits on its peer.

What each party learns (semi-honest), as in FATE's CoordinatedLR: its own batch
gradient ``X_p,B^T d_B`` (hence its coefficients), nothing else. That gradient is a
linear function of the other parties' data: the partner learns ``X_P,B^T (0.25 z_L +
0.5 - y)`` on B (weighted by s), the label holder ``X_L,B^T 0.25 z_P``. With no more
rows in B than columns that system has a unique solution, the partner would read the
labels and the label holder the partner's scores row by row; so every batch has at
least ``policy.min_batch`` rows (4 per column of the widest block, at least 64, short
last batches merged) and the gradient is an aggregate whose least-squares reading
recovers no row (tests/ml/lr/test_attacks.py: at 64-row batches the partner's reading
of the labels is worse than guessing the majority class). It still carries aggregate
information (how the other side's residuals or scores correlate with one's own columns
on B), the known leakage of gradient-based vertical LR; and the run's first batch, at
``w = 0``, gives the partner ``X_P,B^T (0.5 - y)`` exactly, ``f`` sums of 0/1 unknowns
that the row minimum does not protect against a combinatorial (subset-sum) search.
Masked gradients travel under uniform masks 2^stat_sec times wider than their bound
(statistically hiding). Semi-honest only: each key holder decrypts whatever masked
vector its peer sends (checked for length and range, see :mod:`._homomorphic`), so a
malicious peer could ask for k of its residuals; a malicious-secure mode needs proofs.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from veil.crypto.he import EncryptedArray, HEPublicKey
from veil.errors import ProtocolError
from veil.ml.lr._fields import CipherMessage, IntsMessage
from veil.ml.lr._homomorphic import (
    MAX_MASKED_BITS,
    Prefill,
    add_mask,
    decrypt_bounded,
    encrypt,
    matmul,
    unmask,
)
from veil.ml.lr._math import FloatArray, IndexArray
from veil.ml.lr._setup import Run
from veil.net.session import Session


class ResidualTag(StrEnum):
    """Messages of the ``he`` protocol (after the start of :mod:`._setup`)."""

    WEIGHTS = "weights"  # L -> P: [[s]]_L, class weights only
    ENC_RESIDUAL = "enc_residual"  # L -> P: [[s(0.25 z_L + 0.5 - y)]]_L
    ENC_SCORE = "enc_score"  # P -> L: [[0.25 z_P]]_P
    ENC_SCORE_X = "enc_score_x"  # P -> P': [[0.25 z_P]]_L (>= 2 partners)
    MASKED_GRAD = "masked_grad"  # encrypted gradient + mask, to the key owner
    UNMASKED = "unmasked"  # the key owner's decryption of it, back


def _recv(bs: Session, frm: str, tag: ResidualTag, pk: HEPublicKey, n: int) -> EncryptedArray:
    return CipherMessage.from_wire(bs.recv(frm, tag), tag, pk, n).ct


def _send(bs: Session, to: str, tag: ResidualTag, c: EncryptedArray) -> None:
    bs.send(to, tag, CipherMessage(c).to_wire())


def _answer(bs: Session, run: Run, peer: str, width: int) -> None:
    """Decrypt the peer's masked gradient (under this party's key) and send it back."""
    c = _recv(bs, peer, ResidualTag.MASKED_GRAD, run.keys.pk, width)
    try:
        values = decrypt_bounded(run.keys.sk, c)
    except ProtocolError as e:
        raise ProtocolError(f"{ResidualTag.MASKED_GRAD}.ct: {e}") from e
    bs.send(peer, ResidualTag.UNMASKED, IntsMessage(values).to_wire())


def _unmasked(bs: Session, peer: str, mask: list[int], frac_bits: int) -> FloatArray:
    msg = IntsMessage.from_wire(
        bs.recv(peer, ResidualTag.UNMASKED), ResidualTag.UNMASKED, len(mask), MAX_MASKED_BITS + 1
    )
    return unmask(msg.values, mask, frac_bits)


class LabelHolderStep:
    """L's batch gradient in the ``he`` protocol."""

    def __init__(
        self, run: Run, X: FloatArray, y: FloatArray, sw: FloatArray | None, feature_bits: int
    ) -> None:
        self.run, self.X, self.y, self.feature_bits = run, X, y, feature_bits
        self.sw = np.ones(len(y)) if sw is None else sw
        self.prefill = Prefill(run.keys.pk)
        if sw is not None:
            wire = CipherMessage(encrypt(run.keys.pk, sw)).to_wire()
            for p in run.partners:
                run.session.send(p, ResidualTag.WEIGHTS, wire)

    def grad(self, bs: Session, b: int, idx: IndexArray, nxt: int, w: FloatArray) -> FloatArray:
        run, X, s = self.run, self.X[idx], self.sw[idx]
        d = s * (0.25 * (X @ w) + 0.5 - self.y[idx])
        self.prefill.wait()
        enc_d = encrypt(run.keys.pk, d)
        for p in run.partners:
            _send(bs, p, ResidualTag.ENC_RESIDUAL, enc_d)
        self.prefill.start(nxt)
        grad = X.T @ d
        Xs = X * s[:, None]
        masks: dict[str, tuple[list[int], int]] = {}
        for p in run.partners:
            cu = _recv(bs, p, ResidualTag.ENC_SCORE, run.peer_keys[p], len(idx))
            masked, r = add_mask(matmul(cu, Xs, self.feature_bits), run.stat_sec)
            _send(bs, p, ResidualTag.MASKED_GRAD, masked)
            masks[p] = (r, masked.frac_bits)
        for p in run.partners:
            _answer(bs, run, p, run.widths[p])
        for p in run.partners:
            grad = grad + _unmasked(bs, p, *masks[p])
        return np.asarray(grad, dtype=np.float64)

    def close(self) -> None:
        self.prefill.wait()


class PartnerStep:
    """A partner's batch gradient in the ``he`` protocol."""

    def __init__(self, run: Run, X: FloatArray, weighted: bool, feature_bits: int) -> None:
        self.run, self.X, self.feature_bits = run, X, feature_bits
        self.lh = run.label_holder
        self.pk_l = run.peer_keys[self.lh]
        self.others = [p for p in run.partners if p != run.me]
        self.prefill = Prefill(run.keys.pk)
        self.enc_w: EncryptedArray | None = None
        if weighted:
            self.enc_w = _recv(run.session, self.lh, ResidualTag.WEIGHTS, self.pk_l, len(X))

    def grad(self, bs: Session, b: int, idx: IndexArray, nxt: int, w: FloatArray) -> FloatArray:
        run, X, lh = self.run, self.X[idx], self.lh
        u = 0.25 * (X @ w)
        self.prefill.wait()
        _send(bs, lh, ResidualTag.ENC_SCORE, encrypt(run.keys.pk, u))
        self.prefill.start(nxt)
        ew = None if self.enc_w is None else self.enc_w[idx]
        if self.others:
            cross = encrypt(self.pk_l, u) if ew is None else ew * u
            for q in self.others:
                _send(bs, q, ResidualTag.ENC_SCORE_X, cross)
        cd = _recv(bs, lh, ResidualTag.ENC_RESIDUAL, self.pk_l, len(idx))
        if ew is not None:  # else the own term X_P^T u is added in the clear below
            cd = cd + ew * u
        for q in self.others:
            cd = cd + _recv(bs, q, ResidualTag.ENC_SCORE_X, self.pk_l, len(idx))
        masked, mask = add_mask(matmul(cd, X, self.feature_bits), run.stat_sec)
        _send(bs, lh, ResidualTag.MASKED_GRAD, masked)
        _answer(bs, run, lh, run.widths[lh])
        grad = _unmasked(bs, lh, mask, masked.frac_bits)
        if ew is None:
            grad = grad + X.T @ u
        return np.asarray(grad, dtype=np.float64)

    def close(self) -> None:
        self.prefill.wait()
