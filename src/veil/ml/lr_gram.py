"""Vertical LR with one partner: each batch's cross-party Gram block is built once under
HE and secret-shared, after which a training step costs a few dozen HE operations.

Papers: Hardy et al. 2017 (the Taylor loss, see :mod:`veil.ml.lr_protocol`); Nikolaenko
et al. 2013, "Privacy-preserving ridge regression on hundreds of millions of records"
(a quadratic loss needs only sufficient statistics); Mohassel-Zhang 2017, "SecureML"
(additive shares of HE products under statistical masks).

With the Taylor residual ``d = 0.25 (z_L + z_P) + 0.5 - y`` the batch gradients are linear
in the coefficients: with ``A = X_L^T X_P`` (the cross Gram block of the batch),

    g_L = 0.25 (X_L^T X_L w_L + A w_P) + X_L^T (0.5 - y)
    g_P = 0.25 (A^T w_L + X_P^T X_P w_P) + X_P^T (0.5 - y)

Own blocks are local. ``A`` and ``c = X_P^T (0.5 - y)`` are shared additively once per
batch; the batches are a partition fixed for the run (:func:`lr_math.fixed_batches`).
Both cross factors use features rounded to ``feature_bits`` (integers ``K = X 2^f``).

Setup, per batch (``[[.]]_P``: the partner's key, ``[[.]]_L``: the label holder's):
  1. P -> L  [[K_P row + o]]_P per row, its columns packed in slots (offset ``o`` keeps them
     non-negative; several ciphertexts per row when the slots do not fit one).
  2. L: for each column i of K_L and for ``e = 1 - 2y``, the product of the row
     ciphertexts raised to it (one multi-exponentiation), plus a fresh encrypted mask:
     L -> P  [[A_i. + R_i.]]_P and [[2^f_P 2c + r]]_P. P decrypts them: ``S_P = A + R``,
     ``s_P = 2^f_P 2c + r``; L keeps ``S_L = -R``, ``s_L = -r`` (uniform masks, 2^-40 hiding).
  3. L -> P  [[S_L]]_L,  P -> L  [[S_P]]_P (element-wise).
Per step (weights as integers ``W = w 2^fw``):
  L -> P  [[S_P^T W_L + rho_L]]_P and ``S_L^T W_L + 2^(f_L+fw+1) s_L - rho_L``;
  P -> L  [[S_L W_P + rho_P]]_L and ``S_P W_P - rho_P``  (one message each way).
  Each decrypts, adds the plain part and its own terms: L gets ``A W_P`` hence g_L; P gets
  ``A^T W_L + 2^(f_L+fw+1) (s_L + s_P)`` hence g_P.

What each party learns (semi-honest): exactly its own batch gradients, as in the ``he``
protocol -- every decrypted value carries a fresh uniform mask except the sums above,
which are functions of the party's gradient and own data. Neither learns the other's
features, coefficients, labels, residuals or scores; the shares are uniform. Cost: the
partner encrypts its rows once (packed), the label holder runs ``F_L + 1``
multi-exponentiations per batch and ciphertext of a row, once; a step is ``F_L + F_P``
short multi-exponentiations, masks and decryptions a side, independent of the batch size.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from veil.crypto import encoding
from veil.crypto.encrypted import EncryptedArray, concatenate
from veil.errors import ConfigError, ProtocolError
from veil.ml import lr_he as he
from veil.net.session import Session

W_FRAC = 30
"""Fixed-point bits of the coefficients in a step (fewer for coefficients above 2^30)."""


class GramTag(StrEnum):
    """Messages of the ``gram`` protocol (after the hello of :mod:`veil.ml.lr_protocol`)."""

    ROWS = "gram_rows"  # P -> L: packed encrypted rows of one batch, slot layout, f_P
    CROSS = "gram_cross"  # L -> P: masked [[A + R]]_P, [[2^f_P 2c + r]]_P, f_L
    SHARE = "gram_share"  # both ways: [[S]] under the sender's key
    STEP = "gram_step"  # both ways: masked [[S W + rho]] under the receiver's key, plain part


@dataclass(frozen=True)
class Layout:
    """Slots of a packed row: ``per_ct`` columns of ``slot`` bits per ciphertext."""

    n_cols: int
    per_ct: int
    slot: int

    @property
    def n_ct(self) -> int:
        return -(-self.n_cols // self.per_ct)

    def cols(self, c: int) -> range:
        return range(c * self.per_ct, min(self.n_cols, (c + 1) * self.per_ct))


def scale_bits(X: np.ndarray, feature_bits: int) -> int:
    """``f`` with ``|round(X 2^f)| <= 2^feature_bits``."""
    top = float(np.max(np.abs(X))) if X.size else 0.0
    return feature_bits - (math.frexp(top)[1] if top > 0 else 0)


def rounded(X: np.ndarray, f: int) -> np.ndarray:
    out: np.ndarray = np.rint(np.ldexp(X, f)).astype(np.int64)
    return out


def bounds(n_rows: int, feature_bits: int) -> tuple[int, int]:
    """(bound on |A_ij| and |2c_j| 2^f, bound on a masked share) for a batch of ``n_rows``."""
    b = n_rows << (2 * feature_bits + 1)  # also bounds K_L (K_P + offset) before masking
    return b, b << he.STAT_BITS | b


def layout(pk: Any, n_cols: int, n_rows: int, feature_bits: int) -> Layout:
    """Columns per ciphertext so that masked sums never spill into a neighbour slot."""
    slot = bounds(n_rows, feature_bits)[1].bit_length() + 2
    per_ct = (int(pk.plain_bits) - 2) // slot
    if per_ct < 1:
        raise ConfigError("hetero_lr.protocol", "key too small for gram", "use protocol: he")
    n_ct = -(-n_cols // per_ct)
    return Layout(n_cols, -(-n_cols // n_ct), slot)


def _unpack(v: int, lay: Layout, c: int, bound: int) -> list[int]:
    """Signed slot values of one decrypted (centred) packed integer, each within ``bound``."""
    out = encoding.split_slots(v, lay.slot, len(lay.cols(c)))
    if any(abs(x) > bound for x in out):
        raise ProtocolError("gram share outside its bound; refusing it")
    if encoding.pack_slots(out, lay.slot) != v:
        raise ProtocolError("gram share wider than its layout; refusing it")
    return out


def _centred(sk: Any, cts: np.ndarray, bits: int) -> list[int]:
    raw, n = sk.raw_decrypt(cts, 1 << bits)
    return [int(v) - int(n) if int(v) > int(n) // 2 else int(v) for v in raw]


def _mask(bound: int) -> int:
    return secrets.randbelow(2 * bound + 1) - bound


def encrypt_rows(pk: Any, K: np.ndarray, lay: Layout, offset: int) -> list[EncryptedArray]:
    """P: one array per slot group, a ciphertext per row of ``K + offset``."""
    out = []
    for c in range(lay.n_ct):
        cols = (K[:, list(lay.cols(c))] + offset).tolist()
        ints = np.array([encoding.pack_slots(row, lay.slot) for row in cols], dtype=object)
        bound = encoding.pack_slots([2 * offset] * len(lay.cols(c)), lay.slot)
        out.append(EncryptedArray(pk, pk.raw_encrypt(ints), 0, False, bound))
    return out


@dataclass
class Shares:
    """One party's view of a batch after setup."""

    gram: np.ndarray  # own X^T X (float)
    own_c: np.ndarray | None  # L: X_L^T (0.5 - y); P: None
    S: np.ndarray  # own share of A_int (F_L x F_P, object ints)
    s: list[int]  # own share of 2^f_P 2c (F_P ints)
    peer_share: EncryptedArray  # the peer's share under the peer's key (F_L * F_P)


def cross_label_holder(
    rows: list[EncryptedArray], K_L: np.ndarray, y: np.ndarray, lay: Layout, fb: int
) -> tuple[list[Any], np.ndarray, list[int]]:
    """L: masked packed ``[[A + R]]``, ``[[2^f_P 2c + r]]`` for P, and L's shares -R, -r."""
    n, F_L = K_L.shape
    offset = 1 << fb
    e = (1 - 2 * y).astype(np.int64)
    E = np.hstack([K_L, e[:, None]])  # column F_L: the label term
    colsum = [int(v) for v in E.sum(axis=0)]
    b_share = bounds(n, fb)[0]
    R = np.array([[_mask(b_share << he.STAT_BITS) for _ in range(lay.n_cols)] for _ in range(F_L)])
    r = [_mask(b_share << he.STAT_BITS) for _ in range(lay.n_cols)]
    masks = [*R.tolist(), r]
    wires = []
    for c, arr in enumerate(rows):
        prod = arr.matmul(E)  # (F_L + 1,): sum_k E_ki (K_P + o)_k, slot by slot
        cols = list(lay.cols(c))
        ints = [
            encoding.pack_slots([masks[i][j] - offset * colsum[i] for j in cols], lay.slot)
            for i in range(F_L + 1)
        ]
        pk = arr.pk
        mask_ct = pk.raw_encrypt(np.array(ints, dtype=object))
        ct = [
            a * b % pk.ct_modulus for a, b in zip(prod.ct.tolist(), mask_ct.tolist(), strict=True)
        ]
        full = encoding.pack_slots([bounds(n, fb)[1]] * len(cols), lay.slot)
        wires.append(EncryptedArray(pk, np.array(ct, dtype=object), 0, False, full).to_wire())
    S_L = (-R).astype(object)
    return wires, S_L, [-v for v in r]


def cross_partner(
    sk: Any, arrays: list[EncryptedArray], lay: Layout, *, F_L: int, n: int, fb: int
) -> tuple[np.ndarray, list[int]]:
    """P: decrypt L's masked packed sums into its shares ``S_P`` (F_L x F_P) and ``s_P``."""
    bound = bounds(n, fb)[1]
    S = np.empty((F_L + 1, lay.n_cols), dtype=object)
    for c, arr in enumerate(arrays):
        if len(arr) != F_L + 1:
            raise ProtocolError(f"{len(arr)} cross sums, expected {F_L + 1}")
        vals = _centred(sk, arr.ct.ravel(), int(sk.public_key.plain_bits))
        cols = list(lay.cols(c))
        for i, v in enumerate(vals):
            S[i, cols] = _unpack(v, lay, c, bound)
    return S[:F_L], list(S[F_L])


def encrypt_share(pk: Any, S: np.ndarray, n: int, fb: int) -> EncryptedArray:
    """``[[S]]`` element-wise under the sender's own key (flattened row-major)."""
    flat = np.array(S.ravel().tolist(), dtype=object)
    return EncryptedArray(pk, pk.raw_encrypt(flat), 0, False, bounds(n, fb)[1])


def mat_vec(peer_share: EncryptedArray, shape: tuple[int, int], W: np.ndarray, rows: bool) -> Any:
    """``[[S W]]`` (``rows``: S is (len, len(W)) row-major) or ``[[S^T W]]``, under the peer's
    key, from the peer's encrypted share: one multi-exponentiation per output."""
    r, c = shape
    grid = peer_share.ct.reshape(r, c)
    Wc = W.reshape(-1, 1)
    parts = []
    for k in range(r if rows else c):
        line = grid[k] if rows else grid[:, k]
        arr = EncryptedArray(peer_share.pk, np.ascontiguousarray(line), 0, False, peer_share.bound)
        parts.append(arr.matmul(Wc))
    return concatenate(parts)


def encode_w(w: np.ndarray) -> tuple[np.ndarray, int]:
    """Coefficients as int64 ``w 2^fw`` (fw <= W_FRAC, below 2^61 in magnitude)."""
    top = float(np.max(np.abs(w))) if w.size else 0.0
    fw = min(W_FRAC, 60 - (math.frexp(top)[1] if top > 0 else 0))
    return rounded(w, fw), fw


def step_message(sh: Shares, W: np.ndarray, fw: int, *, lh: bool, f_L: int) -> dict[str, Any]:
    """This party's step message. ``lh``: the label holder (sends
    ``[[S_P^T W_L + rho]]`` and ``S_L^T W_L + 2^(f_L+fw+1) s_L - rho``), else the partner
    (``[[S_L W_P + rho]]`` and ``S_P W_P - rho``)."""
    prod = mat_vec(sh.peer_share, sh.S.shape, W, rows=not lh)
    masked, rho = he.add_mask(prod)
    Wo = np.array(W.tolist(), dtype=object)
    if lh:
        plain = sh.S.T.dot(Wo) + np.array(sh.s, dtype=object) * (1 << (f_L + fw + 1))
    else:
        plain = sh.S.dot(Wo)
    part = [int(v) - m for v, m in zip(plain.tolist(), rho, strict=True)]
    return {"ct": masked.to_wire(), "part": part, "fw": fw}


def read_step(sk: Any, msg: Any, n_out: int) -> tuple[list[int], list[int], int]:
    """(decrypted masked vector, plain part, peer fw) of a peer's step message."""
    if not isinstance(msg, dict) or not {"ct", "part", "fw"} <= set(msg):
        raise ProtocolError("malformed gram step message")
    arr = he.ct_from_wire(sk.public_key, msg["ct"])
    part, fw = msg["part"], int(msg["fw"])
    if len(arr) != n_out or not isinstance(part, list) or len(part) != n_out:
        raise ProtocolError(f"gram step of {len(arr)} values, expected {n_out}")
    if not all(isinstance(v, int) for v in part) or not 0 <= fw <= W_FRAC:
        raise ProtocolError("gram step part holds non-integers or a bad scale")
    return he.decrypt_masked(sk, arr), part, fw


# -- roles -----------------------------------------------------------------------------
@dataclass
class Side:
    """What a party brings: its block (L: with the intercept column), keys, the peer."""

    s: Session
    peer: str
    X: np.ndarray
    pk: Any
    sk: Any
    peer_pk: Any
    feature_bits: int


def setup_label_holder(
    side: Side, y: np.ndarray, parts: list[np.ndarray]
) -> tuple[list[Shares], int, int]:
    """L: the shares of every batch; returns them with (f_L, f_P)."""
    f_L, fb = scale_bits(side.X, side.feature_bits), side.feature_bits
    K = rounded(side.X, f_L)
    out, f_P = [], 0
    for b, idx in enumerate(parts):
        bs = side.s.sub(f"gram{b}")
        msg = bs.recv(side.peer, GramTag.ROWS)
        try:
            lay = Layout(int(msg["n_cols"]), int(msg["per_ct"]), int(msg["slot"]))
            f_P, rows = int(msg["f"]), [he.ct_from_wire(side.peer_pk, w) for w in msg["ct"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"malformed gram rows: {e}") from e
        want = layout(side.peer_pk, lay.n_cols, len(idx), fb)
        if lay != want or len(rows) != lay.n_ct or any(len(r) != len(idx) for r in rows):
            raise ProtocolError("gram rows do not match the batch or the agreed layout")
        wires, S, s_ = cross_label_holder(rows, K[idx], y[idx], lay, fb)
        bs.send(side.peer, GramTag.CROSS, {"ct": wires, "f": f_L})
        bs.send(side.peer, GramTag.SHARE, encrypt_share(side.pk, S, len(idx), fb).to_wire())
        peer_share = he.ct_from_wire(side.peer_pk, bs.recv(side.peer, GramTag.SHARE))
        if len(peer_share) != S.size:
            raise ProtocolError(f"{len(peer_share)} share ciphertexts, expected {S.size}")
        Xb = side.X[idx]
        own_c = Xb.T @ (0.5 - y[idx])
        out.append(Shares(Xb.T @ Xb, own_c, S, s_, peer_share))
    return out, f_L, f_P


def setup_partner(side: Side, parts: list[np.ndarray], F_L: int) -> tuple[list[Shares], int, int]:
    """P: encrypt every batch's rows first (L works on batch b while P encrypts b + 1),
    then turn L's masked sums into shares; returns them with (f_L, f_P)."""
    f_P, fb = scale_bits(side.X, side.feature_bits), side.feature_bits
    K = rounded(side.X, f_P)
    lays = []
    for b, idx in enumerate(parts):
        lay = layout(side.pk, K.shape[1], len(idx), fb)
        rows = encrypt_rows(side.pk, K[idx], lay, 1 << fb)
        head = {"n_cols": lay.n_cols, "per_ct": lay.per_ct, "slot": lay.slot, "f": f_P}
        side.s.sub(f"gram{b}").send(
            side.peer, GramTag.ROWS, {**head, "ct": [r.to_wire() for r in rows]}
        )
        lays.append(lay)
    out, f_L = [], 0
    for b, idx in enumerate(parts):
        bs = side.s.sub(f"gram{b}")
        cross = bs.recv(side.peer, GramTag.CROSS)
        if not isinstance(cross, dict) or not isinstance(cross.get("ct"), list):
            raise ProtocolError("malformed gram cross sums")
        f_L = int(cross["f"])
        arrays = [he.ct_from_wire(side.pk, w) for w in cross["ct"]]
        if len(arrays) != lays[b].n_ct:
            raise ProtocolError(f"{len(arrays)} cross arrays, expected {lays[b].n_ct}")
        S, s_ = cross_partner(side.sk, arrays, lays[b], F_L=F_L, n=len(idx), fb=fb)
        bs.send(side.peer, GramTag.SHARE, encrypt_share(side.pk, S, len(idx), fb).to_wire())
        peer_share = he.ct_from_wire(side.peer_pk, bs.recv(side.peer, GramTag.SHARE))
        if len(peer_share) != S.size:
            raise ProtocolError(f"{len(peer_share)} share ciphertexts, expected {S.size}")
        Xb = side.X[idx]
        out.append(Shares(Xb.T @ Xb, None, S, s_, peer_share))
    return out, f_L, f_P


def _exchange(
    side: Side, sh: Shares, w: np.ndarray, bs: Session, *, lh: bool, f_L: int
) -> tuple[list[int], int]:
    """One step's message each way: ``(peer's masked vector, decrypted, + its plain part,
    the peer's fw)`` -- ``A W_P`` at the label holder, ``A^T W_L + 2^(f_L+fw+1) s_L`` at
    the partner."""
    W, fw = encode_w(w)
    bs.send(side.peer, GramTag.STEP, step_message(sh, W, fw, lh=lh, f_L=f_L))
    n_out = sh.S.shape[0 if lh else 1]
    a, part, fw_peer = read_step(side.sk, bs.recv(side.peer, GramTag.STEP), n_out)
    return [x + y for x, y in zip(a, part, strict=True)], fw_peer


def grad_label_holder(
    side: Side, sh: Shares, w: np.ndarray, bs: Session, f: tuple[int, int]
) -> np.ndarray:
    """L's gradient (sum over the batch) at coefficients ``w`` (and the partner's)."""
    f_L, f_P = f
    aw, fw_p = _exchange(side, sh, w, bs, lh=True, f_L=f_L)
    cross = np.ldexp(np.array([float(v) for v in aw]), -(f_L + f_P + fw_p))
    assert sh.own_c is not None
    out: np.ndarray = 0.25 * (sh.gram @ w + cross) + sh.own_c
    return out


def grad_partner(
    side: Side, sh: Shares, w: np.ndarray, bs: Session, f: tuple[int, int]
) -> np.ndarray:
    """P's gradient (sum over the batch) at coefficients ``w`` (and the label holder's)."""
    f_L, f_P = f
    atw, fw_l = _exchange(side, sh, w, bs, lh=False, f_L=f_L)
    k = 1 << (f_L + fw_l + 1)
    q = [v + k * t for v, t in zip(atw, sh.s, strict=True)]
    cross = np.ldexp(np.array([float(v) for v in q]), -(f_L + f_P + fw_l + 2))
    out: np.ndarray = 0.25 * (sh.gram @ w) + cross
    return out
