"""Shares of products of the two parties' own bounded data under additively homomorphic
encryption (Paillier or OU): no Beaver triple for a data-by-data product.

SecureML's LHE offline phase (Mohassel and Zhang, IEEE S&P 2017, section IV-B;
:mod:`veil.mpc.he_triples`) multiplies uniformly random 64-bit words. When both factors
are the parties' own data, bounded fixed-point integers (a Gram block ``X_0ᵀ X_1`` of a
vertically split matrix, ``X_1ᵀ y``), the same HE step can produce additive shares of
the product itself, the HE matrix product of two-party vertical learning (Hardy et al.,
arXiv:1711.10677, 2017; CAESAR, Chen et al., CCS 2021). The factors are integers
``|x| < 2^b`` with ``b`` about ``f_x + 2`` bits, not 64, so

* the exponents are ``b``-bit signed integers: a signed multi-exponentiation (Pippenger,
  :meth:`veil.crypto.backend.HEBackend.multi_exp_columns`) costs about a fifth of one
  over 64-bit words (OU-2048: 3.1 against 14.5 us a product, wall time on both cores;
  4.3 us of CPU, Paillier-2048 10.5);
* a slot holds ``val = b_0 + b_1 + bitlen(rows)`` bits of product sum plus the mask
  (about 80 bits, against 180 for random words): 25 slots per Paillier-2048 plaintext,
  8 per OU-2048 one (11 and 3 for random words).

Protocol for ``C_R = A_Rᵀ B_R`` (party 0 holds ``A`` (n x a), party 1 ``B`` (n x b);
``R`` runs over public row subsets); ``v``, the party whose block of ``R`` is
encrypted, is chosen per subset from public sizes (:meth:`Layout.encryptors`: the
cheaper way, alternating between the parties where both cost about the same so that
each encrypts some subsets while multiplying the other's), ``u`` is the other:

1. v -> u  ``he_cross_operand`` (one per row subset): ``Enc_v(V_R + 2^b_v)``, ``slots``
   columns per plaintext, under v's own key (the offset makes every slot non-negative,
   so a plaintext's window digits are zero outside the slots' low ``b_v + 1`` bits and
   OU's ``G^m`` skips them: 56 against 133 us an encryption);
2. u -> v  ``he_cross_product`` (one per row subset): per row ``i`` of ``U_Rᵀ V_R`` and
   slot group, ``Enc_v(U_Rᵀ (V_R + 2^b_v) + 2^val + M)``, ``M`` uniform in
   ``[0, 2^(val+1+stat_sec))`` per slot and freshly encrypted (new randomness);
3. v's share is each slot mod 2^64; u's is ``-(2^b_v s_i + 2^val + M) mod 2^64`` with
   ``s_i`` the sum of column ``i`` of ``U_R`` (u knows it).

What each party learns: u, ciphertexts under v's key (semantically secure). v, per
entry ``S = C' + 2^val + M`` with ``C' = C + 2^b_v s_i``, ``|C'| < 2^val``: for any two
values of ``C'`` the distributions of ``S`` are within ``2^-stat_sec`` of each other
(statistical hiding), so ``S`` tells nothing about ``C`` (nor ``s_i``). Each party's
output is an additive share (:func:`gram_shares` re-randomises them with the common
stream). Both know the public layout: row subsets, widths, which party encrypts which
subset, and the agreed bounds ``b_0``, ``b_1``. The bounds are public parameters both
derive from agreed options; each party checks its own data against its bound before
anything is sent (:func:`check_bound`: a ConfigError naming the column), so they reveal
nothing beyond the agreed bound. Semi-honest parties; ``stat_sec`` from the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from veil.codec import IntArray
from veil.crypto import he
from veil.crypto.kernels import objects
from veil.errors import ConfigError
from veil.messages import Fields
from veil.mpc.channel import Channel
from veil.mpc.he_keys import HEKeys
from veil.mpc.prg import PRG, new_seed
from veil.mpc.ring import Share
from veil.mpc.slots import pack, unpack

__all__ = ["Layout", "Link", "Tag", "check_bound", "cross_shares", "gram_shares"]

_MASK64 = (1 << 64) - 1
ENCRYPTION_COST = 8
"""One encryption of an operand costs about this many 12-bit products (one core, CPU
time: OU-2048 42 us a sparse encryption against 4.3 us a product, Paillier-2048 60
against 10.5); :meth:`Layout.encryptors` weighs ciphertexts against products with it."""
BALANCE = 1.3
"""An orientation up to this much dearer than the cheapest may take a subset, to even
the parties' work (:meth:`Layout.encryptors`)."""


class Tag(StrEnum):
    """Messages of the direct cross products."""

    OPERAND = "he_cross_operand"  # v -> u: Enc_v(V_R), packed
    PRODUCT = "he_cross_product"  # u -> v: Enc_v(U_R^T V_R + 2^val + M), packed


@dataclass(frozen=True)
class Layout:
    """The public layout of ``A_Rᵀ B_R``: both parties build the same one."""

    widths: tuple[int, int]  # columns of party 0's A and of party 1's B
    bits: tuple[int, int]  # |A| < 2^bits[0], |B| < 2^bits[1]
    rows: int  # the largest row subset
    stat_sec: int

    def __post_init__(self) -> None:
        if min(self.widths) < 1 or min(self.bits) < 1 or self.rows < 1 or self.stat_sec < 1:
            raise ConfigError("layout", f"bad cross-product layout {self}")

    @property
    def val_bits(self) -> int:
        """``|C + 2^b_v s| < 2^val``: ``C`` and ``2^b_v s`` are each sums of ``rows``
        terms below ``2^(b_0 + b_1)``."""
        return self.bits[0] + self.bits[1] + self.rows.bit_length() + 1

    @property
    def slot_bits(self) -> int:
        """``S = C + 2^val + M < 2^(val+1) + 2^(val+1+stat_sec) <= 2^slot``."""
        return self.val_bits + self.stat_sec + 2

    def slots(self, pk: he.HEPublicKey) -> int:
        """Slots per plaintext of ``pk`` (every value below ``2^plain_bits`` fits)."""
        s = pk.plain_bits // self.slot_bits
        if s < 1:
            raise ConfigError(
                "cross.bits", f"a {self.slot_bits}-bit slot does not fit a {pk.bits}-bit key"
            )
        return s

    def encryptors(
        self, pks: tuple[he.HEPublicKey, he.HEPublicKey], sizes: Sequence[int]
    ) -> list[int]:
        """Which party encrypts its block of each row subset (of ``sizes`` rows), under
        ``pks[v]``, its own key. Orientations within ``BALANCE`` of the cheapest
        (ciphertexts plus products) qualify; among them each subset goes, in order, to
        the one that evens the two parties' work, so both encrypt some subsets while
        multiplying the other's (a single subset: the cheapest, as nothing overlaps).
        Public sizes only: both get the same list."""
        per_row = []  # (total, the encryptor's work, the other's) per row, v = 0 and 1
        for v in (0, 1):
            groups = -(-self.widths[v] // self.slots(pks[v]))
            enc, mul = groups * ENCRYPTION_COST, groups * self.widths[1 - v]
            per_row.append((enc + mul, enc, mul))
        best = min(c[0] for c in per_row)
        ok = [v for v in (0, 1) if per_row[v][0] <= BALANCE * best]
        load = [0.0, 0.0]
        out = []
        for n in sizes:
            after = []
            for v in ok:
                here = load.copy()
                here[v] += n * per_row[v][1]
                here[1 - v] += n * per_row[v][2]
                # one subset: nothing overlaps, the total counts; several: the busier party
                span = max(here) if len(sizes) > 1 else sum(here)
                after.append((span, per_row[v][0], v, here))
            _, _, v, load = min(after)
            out.append(v)
        return out


def check_bound(X: npt.NDArray[np.int64], bits: int, names: Sequence[str], where: str) -> None:
    """Refuse data outside the agreed public bound ``|x| < 2^bits`` (ConfigError naming
    the first column that is); before anything is sent."""
    if X.ndim != 2 or X.dtype != np.int64:
        raise ConfigError(where, f"expected a 2-D int64 matrix, got {X.dtype} {X.shape}")
    top = np.abs(X).max(axis=0) if len(X) else np.zeros(X.shape[1], dtype=np.int64)
    for j in np.flatnonzero(top >= 1 << bits).tolist():
        name = names[j] if j < len(names) else f"column {j}"
        raise ConfigError(
            f"{where}.{name}",
            f"encoded value {int(top[j])} is outside the agreed bound 2^{bits}",
            "clip or standardize the column (standardize: true, clip: 3)",
        )


@dataclass(frozen=True)
class Link:
    """This party's end of the two compute parties' HE session: the channel, its index
    (0 or 1), both names and the exchanged keys (:func:`veil.mpc.he_keys.exchange_keys`)."""

    ch: Channel
    party: int
    parties: tuple[str, str]
    keys: HEKeys


def cross_shares(
    link: Link,
    mine: npt.NDArray[np.int64],
    layout: Layout,
    rowsets: Sequence[npt.NDArray[np.int64]],
    names: Sequence[str] = (),
) -> list[Share]:
    """This party's shares of ``A_Rᵀ B_R`` (shape (a, b)) for each row subset ``R``;
    ``mine`` is ``A`` for party 0, ``B`` for party 1 (checked against the bound)."""
    ch, party, parties, keys = link.ch, link.party, link.parties, link.keys
    if party not in (0, 1) or mine.ndim != 2 or mine.shape[1] != layout.widths[party]:
        raise ConfigError("cross.mine", f"party {party}: matrix {mine.shape} for {layout}")
    check_bound(mine, layout.bits[party], names, f"cross[{parties[party]}]")
    if any(len(r) > layout.rows for r in rowsets):
        raise ConfigError("cross.rowsets", f"a row subset is longer than {layout.rows}")
    pks = (keys.pk, keys.peer_pk) if party == 0 else (keys.peer_pk, keys.pk)
    order = layout.encryptors(pks, [len(r) for r in rowsets])
    peer = parties[1 - party]
    out: list[Share | None] = [None] * len(rowsets)
    for k, rows in enumerate(rowsets):  # 1. encrypt our blocks of the subsets we encrypt
        if order[k] == party:
            ch.send(peer, Tag.OPERAND, _operand(keys, mine[rows], layout, party))
    prg = PRG(new_seed())
    for k, rows in enumerate(rowsets):  # 2. multiply the peer's, meanwhile it does ours
        if order[k] != party:
            msg = ch.recv(peer, Tag.OPERAND)
            wire, out[k] = _product(keys, mine[rows], layout, 1 - party, msg, (prg, f"m{k}"))
            ch.send(peer, Tag.PRODUCT, wire)
    for k in range(len(rowsets)):  # 3. decrypt the products of our operands
        if order[k] == party:
            out[k] = _decrypt(keys, layout, party, ch.recv(peer, Tag.PRODUCT))
    return [x for x in out if x is not None]


def _operand(keys: HEKeys, V: npt.NDArray[np.int64], layout: Layout, v: int) -> dict[str, object]:
    """v: ``Enc_v(V_R + 2^b_v)``, packed."""
    pk = keys.pk
    packed = pack(V + (1 << layout.bits[v]), layout.slot_bits, layout.slots(pk))
    ct = pk.raw_encrypt(objects(packed.ravel().tolist()))
    return {"ct": IntArray(list(ct), pk.ct_bytes)}


def _product(  # noqa: PLR0917
    keys: HEKeys,
    U: npt.NDArray[np.int64],
    layout: Layout,
    v: int,
    msg: object,
    stream: tuple[PRG, str],
) -> tuple[dict[str, object], Share]:
    """u: ``Enc_v(U_Rᵀ (V_R + 2^b_v) + 2^val + M)`` for v, and u's share
    ``-(2^b_v s + 2^val + M)`` (as ``A_Rᵀ B_R``'s share: transposed if v is party 0)."""
    pk = keys.peer_pk
    slot, slots = layout.slot_bits, layout.slots(pk)
    w_u, w_v = U.shape[1], layout.widths[v]
    groups = -(-w_v // slots)
    val, m = layout.val_bits, pk.ct_modulus
    f = Fields(Tag.OPERAND, msg)
    cts = _ciphertexts(f, "ct", len(U) * groups, pk).reshape(len(U), groups)
    Ut = np.ascontiguousarray(U.T)  # (w_u, |R|) signed small exponents
    prods = [pk.backend.multi_exp_columns(list(cts[:, g]), Ut, m) for g in range(groups)]
    prg, label = stream
    flat = prg.below(label, w_u * w_v, val + 1 + layout.stat_sec)
    M = [flat[i * w_v : (i + 1) * w_v] for i in range(w_u)]
    sums = [int(x) << layout.bits[v] for x in U.sum(axis=0)]
    offset = [[(1 << val) + x for x in row] for row in M]
    own = [[(1 << val) + x + si for x in row] for row, si in zip(M, sums, strict=True)]
    masks = pack(np.array(offset, dtype=object), slot, slots)  # (w_u, groups)
    enc = pk.raw_encrypt(objects(masks.ravel().tolist()))
    a = [prods[g][i] for i in range(w_u) for g in range(groups)]
    res = pk.backend.mulmod_list(a, list(enc), m)
    mine = np.array([[(-x) & _MASK64 for x in row] for row in own], dtype=np.uint64)
    mine = mine.reshape(w_u, w_v)
    return {"ct": IntArray(res, pk.ct_bytes)}, (mine.T.copy() if v == 0 else mine)


def _decrypt(keys: HEKeys, layout: Layout, v: int, msg: object) -> Share:
    """v: its share, each slot of ``U_Rᵀ V_R + ...`` mod 2^64 (as ``A_Rᵀ B_R``'s)."""
    pk = keys.pk
    slot, slots = layout.slot_bits, layout.slots(pk)
    w_u, w_v = layout.widths[1 - v], layout.widths[v]
    groups = -(-w_v // slots)
    f = Fields(Tag.PRODUCT, msg)
    cts = _ciphertexts(f, "ct", w_u * groups, pk)
    # the used slots only: a narrow span lets Paillier decrypt mod p alone (2x faster)
    vals, _mod = keys.sk.raw_decrypt(cts, 1 << (min(slots, w_v) * slot))
    share = unpack(vals, slot, slots).reshape(w_u, groups * slots)[:, :w_v]
    return share.T.copy() if v == 0 else share


def gram_shares(
    link: Link,
    X: npt.NDArray[np.int64],
    layout: Layout,
    rowsets: Sequence[npt.NDArray[np.int64]],
    *,
    n_extra: int = 0,
    extra: npt.NDArray[np.int64] | None = None,
    names: Sequence[str] = (),
) -> list[tuple[Share, Share]]:
    """Shares of the Gram matrix ``G_R = [X_0 X_1]_Rᵀ [X_0 X_1]_R`` of a vertically split
    matrix and of ``H_R = [X_0 X_1]_Rᵀ E_R`` for party 0's ``n_extra`` further columns
    ``E`` (e.g. labels), per row subset: one cross product ``[X_0 E]ᵀ X_1`` under HE
    (:func:`cross_shares`), the rest local. ``layout.widths`` are ``(w_0 + n_extra,
    w_1)``; party 0 passes ``X_0`` and ``extra`` (bounded like ``X_0``), party 1 ``X_1``.
    The shares are re-randomised with the common stream of ``keys`` (as in
    :mod:`veil.mpc.he_triples`: SecureML's truncation needs a uniform share at party 1;
    it changes no party's knowledge)."""
    party = link.party
    w0, w1 = layout.widths[0] - n_extra, layout.widths[1]
    if X.ndim != 2 or X.shape[1] != (w0, w1)[party] or w0 < 1:
        raise ConfigError("gram.X", f"party {party}: matrix {X.shape} for {layout}")
    if party == 0 and (extra is None) != (n_extra == 0):
        raise ConfigError("gram.extra", f"{n_extra} extra columns agreed, got {extra is not None}")
    A = X if extra is None or party == 1 else np.hstack([X, extra])
    if extra is not None and party == 0 and extra.shape != (len(X), n_extra):
        raise ConfigError("gram.extra", f"shape {extra.shape}, expected ({len(X)}, {n_extra})")
    cross = cross_shares(link, A, layout, rowsets, names)
    w = w0 + w1
    rerand = PRG(link.keys.common)
    out = []
    for k, (rows, C) in enumerate(zip(rowsets, cross, strict=True)):
        G = np.zeros((w, w), dtype=np.uint64)
        H = np.zeros((w, n_extra), dtype=np.uint64)
        Xr = X[rows].view(np.uint64)
        if party == 0:
            G[:w0, :w0] = Xr.T @ Xr
            if extra is not None:
                H[:w0] = Xr.T @ extra[rows].view(np.uint64)
        else:
            G[w0:, w0:] = Xr.T @ Xr
        G[:w0, w0:] += C[:w0]
        G[w0:, :w0] += C[:w0].T
        H[w0:] += C[w0:].T
        rg = rerand.words(f"gram/{k}/G", G.shape)
        rh = rerand.words(f"gram/{k}/H", H.shape)
        out.append((G + rg, H + rh) if party == 0 else (G - rg, H - rh))
    return out


# -- helpers ------------------------------------------------------------------------------
def _ciphertexts(f: Fields, name: str, n: int, pk: he.HEPublicKey) -> np.ndarray:
    """``n`` ciphertexts in ``[1, modulus)`` at the key's width (ProtocolError naming
    the tag and field otherwise)."""
    v = f.get(name, IntArray)
    if v.width != pk.ct_bytes or len(v) != n:
        raise f.error(name, f"{len(v)} ciphertexts of {v.width} bytes, expected {n}")
    m = pk.ct_modulus
    if any(not 0 < c < m for c in v.values):
        raise f.error(name, "a ciphertext is out of range for the key")
    return objects(list(v.values))
