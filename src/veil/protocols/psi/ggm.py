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
    """(T, W, 2) nodes -> (T, 2W, 2) children, left child at even positions."""
    t, w = level.shape[:2]
    raw = level.astype("<u8").tobytes()
    out = np.empty((t, w, 2, 2), dtype=np.uint64)
    for side, key in enumerate(_KEYS):
        enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        prf = np.frombuffer(enc.update(raw), dtype="<u8").reshape(t, w, 2)
        np.bitwise_xor(prf, level, out=out[:, :, side])
    return out.reshape(t, 2 * w, 2)


def expand_full(roots: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The holder's side: leaves (T, 2^depth, 2) from roots (T, 2), and the level sums
    (T, depth, 2 sides, 2): [j, l, b] = XOR of the side-b children at level l + 1."""
    t = len(roots)
    cur = roots.reshape(t, 1, 2).astype(np.uint64)
    sums = np.empty((t, depth, 2, 2), dtype=np.uint64)
    for lvl in range(depth):
        cur = _expand(cur)
        sums[:, lvl, 0] = np.bitwise_xor.reduce(cur[:, 0::2], axis=1)
        sums[:, lvl, 1] = np.bitwise_xor.reduce(cur[:, 1::2], axis=1)
    return cur, sums


def path_bits(alpha: np.ndarray, depth: int) -> np.ndarray:
    """(T, depth) bits of each alpha, most significant (the root's child) first."""
    shifts = np.arange(depth - 1, -1, -1, dtype=np.int64)
    out: np.ndarray = ((alpha.astype(np.int64)[:, None] >> shifts) & 1).astype(np.uint8)
    return out


def expand_punctured(alpha: np.ndarray, off_sums: np.ndarray, depth: int) -> np.ndarray:
    """The other side: leaves (T, 2^depth, 2) with leaf alpha_j of tree j set to zero,
    from ``off_sums`` (T, depth, 2), the holder's level sums on the side off the path."""
    t = len(alpha)
    rows = np.arange(t)
    bits = path_bits(alpha, depth)
    cur = np.zeros((t, 1, 2), dtype=np.uint64)
    parent = np.zeros(t, dtype=np.int64)
    for lvl in range(depth):
        cur = _expand(cur)
        on = 2 * parent + bits[:, lvl]
        off = 2 * parent + 1 - bits[:, lvl]
        cur[rows, 2 * parent] = 0  # children of the unknown node: garbage so far
        cur[rows, 2 * parent + 1] = 0
        left = np.bitwise_xor.reduce(cur[:, 0::2], axis=1)
        right = np.bitwise_xor.reduce(cur[:, 1::2], axis=1)
        known = np.where(bits[:, lvl, None] == 1, left, right)  # the side of `off`
        cur[rows, off] = off_sums[:, lvl] ^ known
        parent = on
    return cur
