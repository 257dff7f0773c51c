"""Hashing in bulk with AES-128 (OpenSSL through ``cryptography``), for the VOLE-based PSI.

Two functions, both over numpy arrays of 128-bit blocks ((n, 2) ``uint64``, column 0
the low 64 bits), both one AES pass per 16 bytes of input with no per-id Python work:

- :func:`id_digests`: each id (bytes of any length) to 128 bits by CBC-MAC under a
  per-run key, over the prefix-free encoding ``block(len) || id || zero padding`` (the
  length block fixes the number of blocks, so no encoding is a prefix of another and
  CBC-MAC is a PRF on them [Bellare, Kilian, Rogaway, JCSS 2000; Petrank, Rackoff,
  J. Cryptology 2000]). Two distinct ids collide with probability about 2^-128 over
  the key, which both parties draw after their ids are fixed.
- :func:`mmo`: the Matyas-Meyer-Oseas hash ``x -> AES_k(x) ^ x`` of each block, the
  correlation-robust hash that RR22's reference implementation (volePSI, ``RsOprf``)
  uses for H and the OPRF's output hash [Guo, Katz, Wang, Yu, "Efficient and secure
  multiparty computation from fixed-key block ciphers", IEEE S&P 2020]; here under a
  per-run key rather than a fixed one.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["ecb", "id_digests", "mmo"]

CHUNK = 1 << 18  # ids per packed chunk: bounds the temporary arrays (~8 MiB per block)
_LEN_TAG = np.uint64(0x6C2D_6469_2D6C_6965)  # marks the length block (any constant would do)


def ecb(key: bytes, blocks: np.ndarray) -> np.ndarray:
    """AES-128 under ``key`` of each row of ``blocks`` ((n, 2) uint64, a new array)."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    raw = enc.update(np.ascontiguousarray(blocks, dtype="<u8").tobytes()) + enc.finalize()
    return np.frombuffer(raw, dtype="<u8").reshape(-1, 2).copy()


def mmo(key: bytes, blocks: np.ndarray) -> np.ndarray:
    """``AES_key(x) ^ x`` of each row of ``blocks`` ((n, 2) uint64)."""
    out = ecb(key, blocks)
    out ^= blocks
    return out


def id_digests(items: Sequence[bytes], key: bytes) -> np.ndarray:
    """The (n, 2) uint64 CBC-MAC of each id in ``items`` under ``key`` (module docstring).

    Ids are packed into fixed-width numpy rows, :data:`CHUNK` ids at a time, by groups of
    similar length (widths of 1, 2, 4, ... blocks), so one long id does not widen every
    row and the temporaries stay small."""
    n = len(items)
    out = np.empty((n, 2), dtype=np.uint64)
    for lo in range(0, n, CHUNK):
        part = items[lo : lo + CHUNK]
        lens = np.fromiter(map(len, part), dtype=np.int64, count=len(part))
        nblocks = (lens + 15) // 16
        widths = np.ones(len(part), dtype=np.int64)  # blocks per packed row: a power of 2
        while (small := widths < nblocks).any():
            widths[small] *= 2
        groups = np.unique(widths).tolist()
        if len(groups) == 1:  # the usual case: no gathering
            out[lo : lo + len(part)] = _cbc_mac(key, part, lens, nblocks, groups[0])
            continue
        for width in groups:
            at = np.flatnonzero(widths == width)
            got = operator.itemgetter(*at.tolist())(part)
            rows = got if len(at) > 1 else (got,)
            out[lo + at] = _cbc_mac(key, rows, lens[at], nblocks[at], width)
    return out


def _cbc_mac(
    key: bytes, part: Sequence[bytes], lens: np.ndarray, nblocks: np.ndarray, width: int
) -> np.ndarray:
    packed = np.array(part, dtype=f"S{16 * width}")  # zero-padded to the group's width
    words = packed.view("<u8").reshape(len(part), width, 2)
    state = np.empty((len(part), 2), dtype=np.uint64)
    state[:, 0] = lens.astype(np.uint64)
    state[:, 1] = _LEN_TAG
    state = ecb(key, state)
    for j in range(width):
        live = nblocks > j
        if live.all():
            state = ecb(key, state ^ words[:, j])
        elif live.any():
            state[live] = ecb(key, state[live] ^ words[live, j])
        else:
            break
    return state
