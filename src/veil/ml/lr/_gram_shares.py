"""The share arithmetic of the ``gram`` protocol (:mod:`._gram`): packed rows, masked
cross sums, encrypted shares and the per-step products. No messages here.

Both cross factors use features rounded to ``feature_bits`` (integers ``K = X 2^f``);
every mask is ``2^stat_sec`` times wider than the value it hides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from veil.crypto import encoding
from veil.crypto.he import EncryptedArray, HEPublicKey, HESecretKey, concatenate
from veil.errors import ConfigError, ProtocolError
from veil.ml.lr._homomorphic import add_mask, random_mask
from veil.ml.lr._math import FloatArray

ObjArray = npt.NDArray[np.object_]
IntMatrix = npt.NDArray[np.int64]

W_FRAC = 30
"""Fixed-point bits of the coefficients in a step (fewer for coefficients above 2^30)."""


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


def scale_bits(X: FloatArray, feature_bits: int) -> int:
    """``f`` with ``|round(X 2^f)| <= 2^feature_bits``."""
    top = float(np.max(np.abs(X))) if X.size else 0.0
    return feature_bits - (math.frexp(top)[1] if top > 0 else 0)


def rounded(X: FloatArray, f: int) -> IntMatrix:
    out: IntMatrix = np.rint(np.ldexp(X, f)).astype(np.int64)
    return out


def bounds(n_rows: int, feature_bits: int, stat_sec: int) -> tuple[int, int]:
    """(bound on |A_ij| and |2c_j| 2^f, bound on a masked share) for a batch of ``n_rows``."""
    b = n_rows << (2 * feature_bits + 1)  # also bounds K_L (K_P + offset) before masking
    return b, b << stat_sec | b


def layout(pk: HEPublicKey, n_cols: int, n_rows: int, feature_bits: int, stat_sec: int) -> Layout:
    """Columns per ciphertext so that masked sums never spill into a neighbour slot."""
    slot = bounds(n_rows, feature_bits, stat_sec)[1].bit_length() + 2
    per_ct = (int(pk.plain_bits) - 2) // slot
    if per_ct < 1:
        raise ConfigError("hetero_lr.protocol", "key too small for gram", "use protocol: he")
    n_ct = -(-n_cols // per_ct)
    return Layout(n_cols, -(-n_cols // n_ct), slot)


def unpack(v: int, lay: Layout, c: int, bound: int) -> list[int]:
    """Signed slot values of one decrypted (centred) packed integer, each within ``bound``."""
    out = encoding.split_slots(v, lay.slot, len(lay.cols(c)))
    if any(abs(x) > bound for x in out):
        raise ProtocolError("gram share outside its bound; refusing it")
    if encoding.pack_slots(out, lay.slot) != v:
        raise ProtocolError("gram share wider than its layout; refusing it")
    return out


def centred(sk: HESecretKey, cts: ObjArray, bits: int) -> list[int]:
    """Signed residues of ciphertexts whose plaintexts span ``2^bits``."""
    raw, n = sk.raw_decrypt(cts, 1 << bits)
    return [int(v) - int(n) if int(v) > int(n) // 2 else int(v) for v in raw]


def encrypt_rows(pk: HEPublicKey, K: IntMatrix, lay: Layout, offset: int) -> list[EncryptedArray]:
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

    gram: FloatArray  # own X^T X (float)
    own_c: FloatArray | None  # L: X_L^T (0.5 - y); P: None
    S: ObjArray  # own share of A_int (F_L x F_P, object ints)
    s: list[int]  # own share of 2^f_P 2c (F_P ints)
    peer_share: EncryptedArray  # the peer's share under the peer's key (F_L * F_P)


def cross_label_holder(
    rows: list[EncryptedArray],
    K_L: IntMatrix,
    y: FloatArray,
    lay: Layout,
    *,
    fb: int,
    stat_sec: int,
) -> tuple[list[EncryptedArray], ObjArray, list[int]]:
    """L: masked packed ``[[A + R]]``, ``[[2^f_P 2c + r]]`` for P, and L's shares -R, -r."""
    n, F_L = K_L.shape
    offset = 1 << fb
    e = (1 - 2 * y).astype(np.int64)
    E = np.hstack([K_L, e[:, None]])  # column F_L: the label term
    colsum = [int(v) for v in E.sum(axis=0)]
    b_share, full_bound = bounds(n, fb, stat_sec)
    wide = b_share << stat_sec
    # dtype=object: masks of 64 to 65 bits would otherwise become float64 (numpy 2 does
    # that to Python ints above int64 but below 2^64) and lose their low bits.
    R = np.array([[random_mask(wide) for _ in range(lay.n_cols)] for _ in range(F_L)], dtype=object)
    r = [random_mask(wide) for _ in range(lay.n_cols)]
    masks = [*R.tolist(), r]
    out = []
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
        full = encoding.pack_slots([full_bound] * len(cols), lay.slot)
        out.append(EncryptedArray(pk, np.array(ct, dtype=object), 0, False, full))
    S_L: ObjArray = -R
    return out, S_L, [-v for v in r]


def cross_partner(
    sk: HESecretKey,
    arrays: list[EncryptedArray],
    lay: Layout,
    *,
    F_L: int,
    n: int,
    fb: int,
    stat_sec: int,
) -> tuple[ObjArray, list[int]]:
    """P: decrypt L's masked packed sums into its shares ``S_P`` (F_L x F_P) and ``s_P``."""
    bound = bounds(n, fb, stat_sec)[1]
    S = np.empty((F_L + 1, lay.n_cols), dtype=object)
    for c, arr in enumerate(arrays):
        vals = centred(sk, arr.ct.ravel(), int(sk.public_key.plain_bits))
        cols = list(lay.cols(c))
        for i, v in enumerate(vals):
            S[i, cols] = unpack(v, lay, c, bound)
    return S[:F_L], list(S[F_L])


def encrypt_share(pk: HEPublicKey, S: ObjArray, n: int, fb: int, stat_sec: int) -> EncryptedArray:
    """``[[S]]`` element-wise under the sender's own key (flattened row-major)."""
    flat = np.array(S.ravel().tolist(), dtype=object)
    return EncryptedArray(pk, pk.raw_encrypt(flat), 0, False, bounds(n, fb, stat_sec)[1])


def mat_vec(
    peer_share: EncryptedArray, shape: tuple[int, int], W: IntMatrix, rows: bool
) -> EncryptedArray:
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


def encode_w(w: FloatArray) -> tuple[IntMatrix, int]:
    """Coefficients as int64 ``w 2^fw`` (fw <= W_FRAC, below 2^61 in magnitude)."""
    top = float(np.max(np.abs(w))) if w.size else 0.0
    fw = min(W_FRAC, 60 - (math.frexp(top)[1] if top > 0 else 0))
    return rounded(w, fw), fw


def step_product(
    sh: Shares, W: IntMatrix, fw: int, stat_sec: int, *, lh: bool, f_L: int
) -> tuple[EncryptedArray, list[int]]:
    """This party's step message. ``lh``: the label holder (sends
    ``[[S_P^T W_L + rho]]`` and ``S_L^T W_L + 2^(f_L+fw+1) s_L - rho``), else the partner
    (``[[S_L W_P + rho]]`` and ``S_P W_P - rho``)."""
    prod = mat_vec(sh.peer_share, sh.S.shape, W, rows=not lh)
    masked, rho = add_mask(prod, stat_sec)
    Wo = np.array(W.tolist(), dtype=object)
    if lh:
        plain = sh.S.T.dot(Wo) + np.array(sh.s, dtype=object) * (1 << (f_L + fw + 1))
    else:
        plain = sh.S.dot(Wo)
    return masked, [int(v) - m for v, m in zip(plain.tolist(), rho, strict=True)]
