"""Punctured PRFs from GGM trees, all trees level by level: the silent VOLE's sparse part.

[Goldreich, Goldwasser, Micali, JACM 1986] trees, punctured as in Boyle, Couteau,
Gilboa, Ishai, Kohl, Scholl ("Efficient Two-Round OT Extension and Silent
Non-Interactive Secure Computation", CCS 2019) and Ferret (Yang, Weng, Lan, Zhang,
Wang, CCS 2020): the tree holder expands T random roots to depth d; a node s has the
children AES_{K0}(s) ^ s and AES_{K1}(s) ^ s (fixed public keys, the
Matyas-Meyer-Oseas construction libOTe and emp-ot use). For each tree and level the
holder also computes the XOR of all left children and of all right children; through
one random OT per level (:mod:`.cot`) the other party learns the sum on the side
*off* its path to a leaf alpha, and from it every node except those on the path, i.e.
every leaf except leaf alpha.

All T trees advance together: one bulk AES-ECB call per key per level, so Python's
cost is per level, not per node. Pure: no I/O.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_KEYS = (
    bytes.fromhex("7665696c2d67676d2d6c656674000001"),
    bytes.fromhex("7665696c2d67676d2d72696768740002"),
)


def _expand(level: np.ndarray) -> np.ndarray:
    """(W, T, 2) nodes -> (2W, T, 2) children: child b of node i of tree j at [b W + i, j].

    AES writes straight into the output (one ECB call per key over all W * T nodes)."""
    w, t = level.shape[:2]
    src = np.ascontiguousarray(level, dtype="<u8").data.cast("B")
    out = np.empty((2 * w + 1, t, 2), dtype=np.uint64)  # one spare row: update_into's slack
    flat = out.data.cast("B")
    half = w * t * 16
    for side, key in enumerate(_KEYS):
        enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        enc.update_into(src, flat[side * half : (side + 1) * half + 16])
    out = out[: 2 * w]
    out[:w] ^= level
    out[w:] ^= level
    return out


def expand_full(roots: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The holder's side: leaves (2^depth, T, 2) from roots (T, 2) -- leaf i of tree j at
    [i, j] -- and the level sums (T, depth, 2 sides, 2): [j, l, b] = XOR of the side-b
    children of tree j at level l + 1."""
    t = len(roots)
    cur = roots.reshape(1, t, 2).astype(np.uint64)
    sums = np.empty((t, depth, 2, 2), dtype=np.uint64)
    for lvl in range(depth):
        w = cur.shape[0]
        cur = _expand(cur)
        sums[:, lvl, 0] = np.bitwise_xor.reduce(cur[:w], axis=0)
        sums[:, lvl, 1] = np.bitwise_xor.reduce(cur[w:], axis=0)
    return cur, sums


def path_bits(alpha: np.ndarray, depth: int) -> np.ndarray:
    """(T, depth) path bits to leaf alpha, the root's child first: bit l of alpha (leaf
    index = sum of b_l 2^l, the layout of :func:`_expand`)."""
    shifts = np.arange(depth, dtype=np.int64)
    out: np.ndarray = ((alpha.astype(np.int64)[:, None] >> shifts) & 1).astype(np.uint8)
    return out


def expand_punctured(alpha: np.ndarray, off_sums: np.ndarray, depth: int) -> np.ndarray:
    """The other side: leaves (2^depth, T, 2) with leaf alpha_j of tree j set to zero,
    from ``off_sums`` (T, depth, 2), the holder's level sums on the side off the path."""
    t = len(alpha)
    trees = np.arange(t)
    bits = path_bits(alpha, depth).astype(np.int64)
    cur = np.zeros((1, t, 2), dtype=np.uint64)
    node = np.zeros(t, dtype=np.int64)  # index of the unknown node on the path
    for lvl in range(depth):
        w = cur.shape[0]
        cur = _expand(cur)
        cur[node, trees] = 0  # children of the unknown node: garbage so far
        cur[w + node, trees] = 0
        left = np.bitwise_xor.reduce(cur[:w], axis=0)
        right = np.bitwise_xor.reduce(cur[w:], axis=0)
        on = bits[:, lvl]
        known = np.where(on[:, None] == 1, left, right)  # the off side's other children
        cur[(1 - on) * w + node, trees] = off_sums[:, lvl] ^ known
        node = on * w + node
    return cur
