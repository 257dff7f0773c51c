"""The ``gram`` protocol of vertical LR (one partner): each batch's cross-party Gram
block is built once under HE and secret-shared, after which a training step costs a few
dozen HE operations.

Papers: Hardy et al. 2017 (the Taylor loss, see :mod:`._residuals`); Nikolaenko et al.
2013, "Privacy-preserving ridge regression on hundreds of millions of records" (a
quadratic loss needs only sufficient statistics); Mohassel-Zhang 2017, "SecureML"
(additive shares of HE products under statistical masks).

With the Taylor residual ``d = 0.25 (z_L + z_P) + 0.5 - y`` the batch gradients are linear
in the coefficients: with ``A = X_L^T X_P`` (the cross Gram block of the batch),

    g_L = 0.25 (X_L^T X_L w_L + A w_P) + X_L^T (0.5 - y)
    g_P = 0.25 (A^T w_L + X_P^T X_P w_P) + X_P^T (0.5 - y)

Own blocks are local. ``A`` and ``c = X_P^T (0.5 - y)`` are shared additively once per
batch; the batches are a partition fixed for the run (:func:`._math.fixed_batches`,
every batch at least ``policy.min_batch`` rows). Arithmetic in :mod:`._gram_shares`.

Setup, per batch (``[[.]]_P``: the partner's key, ``[[.]]_L``: the label holder's):
  1. P -> L  ROWS [[K_P row + o]]_P per row, its columns packed in slots (offset ``o``
     keeps them non-negative; several ciphertexts per row when the slots do not fit one).
  2. L: for each column i of K_L and for ``e = 1 - 2y``, the product of the row
     ciphertexts raised to it (one multi-exponentiation), plus a fresh encrypted mask:
     L -> P  CROSS [[A_i. + R_i.]]_P and [[2^f_P 2c + r]]_P. P decrypts them: ``S_P = A + R``,
     ``s_P = 2^f_P 2c + r``; L keeps ``S_L = -R``, ``s_L = -r`` (uniform masks).
  3. L -> P  SHARE [[S_L]]_L,  P -> L  SHARE [[S_P]]_P (element-wise).
Per step (weights as integers ``W = w 2^fw``):
  L -> P  STEP [[S_P^T W_L + rho_L]]_P and ``S_L^T W_L + 2^(f_L+fw+1) s_L - rho_L``;
  P -> L  STEP [[S_L W_P + rho_P]]_L and ``S_P W_P - rho_P``  (one message each way).
  Each decrypts, adds the plain part and its own terms: L gets ``A W_P`` hence g_L; P gets
  ``A^T W_L + 2^(f_L+fw+1) (s_L + s_P)`` hence g_P.

What each party learns (semi-honest): exactly its own batch gradients, as in the ``he``
protocol and FATE's CoordinatedLR -- every decrypted value carries a fresh uniform mask
except the sums above, which are functions of the party's gradient and own data. Neither
learns the other's features, coefficients, labels, residuals or scores; the shares are
uniform. What one's own gradient implies about the other side (and why batches have a
minimum size) is said in :mod:`._residuals`. Cost: the partner encrypts its rows once
(packed), the label holder runs ``F_L + 1`` multi-exponentiations per batch and
ciphertext of a row, once; a step is ``F_L + F_P`` short multi-exponentiations, masks
and decryptions a side, independent of the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from veil.crypto.he import EncryptedArray, HEPublicKey
from veil.errors import ProtocolError
from veil.messages import Fields
from veil.ml.lr._fields import CipherMessage, read_cipher, read_ciphers
from veil.ml.lr._gram_shares import (
    W_FRAC,
    Layout,
    Shares,
    cross_label_holder,
    cross_partner,
    encode_w,
    encrypt_rows,
    encrypt_share,
    layout,
    rounded,
    scale_bits,
    step_product,
)
from veil.ml.lr._homomorphic import MAX_MASKED_BITS, decrypt_bounded
from veil.ml.lr._math import FloatArray, IndexArray
from veil.ml.lr._setup import Run
from veil.net.session import Session

MAX_SCALE = 2048
"""Largest |fixed-point exponent| of a party's rounded features."""


class GramTag(StrEnum):
    """Messages of the ``gram`` protocol (after the start of :mod:`._setup`)."""

    ROWS = "gram_rows"  # P -> L: packed encrypted rows of one batch, slot layout, f_P
    CROSS = "gram_cross"  # L -> P: masked [[A + R]]_P, [[2^f_P 2c + r]]_P, f_L
    SHARE = "gram_share"  # both ways: [[S]] under the sender's key
    STEP = "gram_step"  # both ways: masked [[S W + rho]] under the receiver's key, plain part


@dataclass(frozen=True)
class Rows:
    lay: Layout
    f: int
    ct: list[EncryptedArray]

    def to_wire(self) -> dict[str, object]:
        return {
            "n_cols": self.lay.n_cols,
            "per_ct": self.lay.per_ct,
            "slot": self.lay.slot,
            "f": self.f,
            "ct": [c.to_wire() for c in self.ct],
        }

    @classmethod
    def from_wire(cls, obj: object, pk: HEPublicKey, want: Layout, n: int) -> Rows:
        """Rows of a batch of ``n`` rows in the layout both sides derive."""
        f = Fields(GramTag.ROWS, obj)
        for name, v in (("n_cols", want.n_cols), ("per_ct", want.per_ct), ("slot", want.slot)):
            if f.get_int(name, lo=1) != v:
                f.fail(name, f"differs from the agreed layout ({v})")
        scale = f.get_int("f", lo=-MAX_SCALE, hi=MAX_SCALE)
        return cls(want, scale, read_ciphers(f, "ct", pk, [n] * want.n_ct))


@dataclass(frozen=True)
class Cross:
    ct: list[EncryptedArray]
    f: int

    def to_wire(self) -> dict[str, object]:
        return {"ct": [c.to_wire() for c in self.ct], "f": self.f}

    @classmethod
    def from_wire(cls, obj: object, pk: HEPublicKey, lay: Layout, F_L: int) -> Cross:
        f = Fields(GramTag.CROSS, obj)
        return cls(
            read_ciphers(f, "ct", pk, [F_L + 1] * lay.n_ct),
            f.get_int("f", lo=-MAX_SCALE, hi=MAX_SCALE),
        )


@dataclass(frozen=True)
class Step:
    ct: EncryptedArray
    part: list[int]
    fw: int

    def to_wire(self) -> dict[str, object]:
        return {"ct": self.ct.to_wire(), "part": self.part, "fw": self.fw}

    @classmethod
    def from_wire(cls, obj: object, pk: HEPublicKey, n_out: int) -> Step:
        f = Fields(GramTag.STEP, obj)
        ct = read_cipher(f, "ct", pk, n_out)
        return cls(
            ct, f.integers("part", n_out, MAX_MASKED_BITS + 1), f.get_int("fw", lo=0, hi=W_FRAC)
        )


def _peer_share(bs: Session, run: Run, peer: str, size: int) -> EncryptedArray:
    msg = bs.recv(peer, GramTag.SHARE)
    return CipherMessage.from_wire(msg, GramTag.SHARE, run.peer_keys[peer], size).ct


def _exchange(
    run: Run, peer: str, sh: Shares, w: FloatArray, bs: Session, *, lh: bool, f_L: int
) -> tuple[list[int], int]:
    """One step's message each way: ``(peer's masked vector, decrypted, + its plain part,
    the peer's fw)`` -- ``A W_P`` at the label holder, ``A^T W_L + 2^(f_L+fw+1) s_L`` at
    the partner."""
    W, fw = encode_w(w)
    masked, part = step_product(sh, W, fw, run.stat_sec, lh=lh, f_L=f_L)
    bs.send(peer, GramTag.STEP, Step(masked, part, fw).to_wire())
    n_out = sh.S.shape[0 if lh else 1]
    msg = Step.from_wire(bs.recv(peer, GramTag.STEP), run.keys.pk, n_out)
    try:
        a = decrypt_bounded(run.keys.sk, msg.ct)
    except ProtocolError as e:
        raise ProtocolError(f"{GramTag.STEP}.ct: {e}") from e
    return [x + y for x, y in zip(a, msg.part, strict=True)], msg.fw


class LabelHolderGram:
    """L's side of ``gram``: the shares of every batch at construction, then steps."""

    def __init__(
        self, run: Run, X: FloatArray, y: FloatArray, parts: list[IndexArray], feature_bits: int
    ) -> None:
        self.run, self.peer = run, run.partners[0]
        fb, sec = feature_bits, run.stat_sec
        peer_pk, F_P = run.peer_keys[self.peer], run.widths[self.peer]
        self.f_L = scale_bits(X, fb)
        K = rounded(X, self.f_L)
        self.shares: list[Shares] = []
        self.f_P = 0
        for b, idx in enumerate(parts):
            bs = run.session.sub(f"gram{b}")
            want = layout(peer_pk, F_P, len(idx), fb, sec)
            rows = Rows.from_wire(bs.recv(self.peer, GramTag.ROWS), peer_pk, want, len(idx))
            self.f_P = rows.f
            cts, S, s_ = cross_label_holder(rows.ct, K[idx], y[idx], want, fb=fb, stat_sec=sec)
            bs.send(self.peer, GramTag.CROSS, Cross(cts, self.f_L).to_wire())
            own = encrypt_share(run.keys.pk, S, len(idx), fb, sec)
            bs.send(self.peer, GramTag.SHARE, CipherMessage(own).to_wire())
            peer_share = _peer_share(bs, run, self.peer, S.size)
            Xb = X[idx]
            self.shares.append(Shares(Xb.T @ Xb, Xb.T @ (0.5 - y[idx]), S, s_, peer_share))

    def grad(self, bs: Session, b: int, idx: IndexArray, nxt: int, w: FloatArray) -> FloatArray:
        sh = self.shares[b]
        aw, fw_p = _exchange(self.run, self.peer, sh, w, bs, lh=True, f_L=self.f_L)
        cross = np.ldexp(np.array([float(v) for v in aw]), -(self.f_L + self.f_P + fw_p))
        assert sh.own_c is not None
        out: FloatArray = 0.25 * (sh.gram @ w + cross) + sh.own_c
        return out

    def close(self) -> None:
        pass


class PartnerGram:
    """P's side of ``gram``: every batch's rows first (L works on batch b while P
    encrypts b + 1), then L's masked sums turned into shares, then steps."""

    def __init__(self, run: Run, X: FloatArray, parts: list[IndexArray], feature_bits: int) -> None:
        self.run, self.peer = run, run.label_holder
        fb, sec, pk = feature_bits, run.stat_sec, run.keys.pk
        F_L = run.widths[self.peer]
        self.f_P = scale_bits(X, fb)
        K = rounded(X, self.f_P)
        lays = []
        for b, idx in enumerate(parts):
            lay = layout(pk, K.shape[1], len(idx), fb, sec)
            rows = Rows(lay, self.f_P, encrypt_rows(pk, K[idx], lay, 1 << fb))
            run.session.sub(f"gram{b}").send(self.peer, GramTag.ROWS, rows.to_wire())
            lays.append(lay)
        self.shares: list[Shares] = []
        self.f_L = 0
        for b, idx in enumerate(parts):
            bs = run.session.sub(f"gram{b}")
            cross = Cross.from_wire(bs.recv(self.peer, GramTag.CROSS), pk, lays[b], F_L)
            self.f_L = cross.f
            try:
                S, s_ = cross_partner(
                    run.keys.sk, cross.ct, lays[b], F_L=F_L, n=len(idx), fb=fb, stat_sec=sec
                )
            except ProtocolError as e:
                raise ProtocolError(f"{GramTag.CROSS}.ct: {e}") from e
            own = encrypt_share(pk, S, len(idx), fb, sec)
            bs.send(self.peer, GramTag.SHARE, CipherMessage(own).to_wire())
            peer_share = _peer_share(bs, run, self.peer, S.size)
            Xb = X[idx]
            self.shares.append(Shares(Xb.T @ Xb, None, S, s_, peer_share))

    def grad(self, bs: Session, b: int, idx: IndexArray, nxt: int, w: FloatArray) -> FloatArray:
        sh = self.shares[b]
        atw, fw_l = _exchange(self.run, self.peer, sh, w, bs, lh=False, f_L=self.f_L)
        if self.f_L + fw_l + 1 < 0:
            raise ProtocolError(f"{GramTag.STEP}.fw: {fw_l} with f_L {self.f_L} leaves no scale")
        k = 1 << (self.f_L + fw_l + 1)
        q = [v + k * t for v, t in zip(atw, sh.s, strict=True)]
        cross = np.ldexp(np.array([float(v) for v in q]), -(self.f_L + self.f_P + fw_l + 2))
        out: FloatArray = 0.25 * (sh.gram @ w) + cross
        return out

    def close(self) -> None:
        pass
