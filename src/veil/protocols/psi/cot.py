"""Correlated OT with a global correlation Delta: IKNP with 128 base OTs, for the VOLE.

Pure primitives: nothing here sends or receives; :mod:`.vole` moves the messages.
Semi-honest security only.

[Ishai, Kilian, Nissim, Petrank, "Extending Oblivious Transfers Efficiently", CRYPTO
2003] in its correlated form (as in Ferret, Yang et al. CCS 2020, and libOTe's
``IknpOtExtSender``/``IknpOtExtReceiver`` before hashing): the Delta holder plays base-OT
*receiver* of 128 Chou-Orlandi OTs (:mod:`.ot`) with the bits of Delta as choices; the
other party (choice bits r, m of them) gets both keys of each base OT, expands column i
as t^i = G(k_i^0) and sends u^i = t^i ^ G(k_i^1) ^ r. The Delta holder computes
q^i = G(k_i^{Delta_i}) ^ Delta_i u^i = t^i ^ Delta_i r, so row j of the two matrices,
read as GF(2^128) elements (bit i = column i, :mod:`.gf128`'s order), satisfy

    t_j = q_j + r_j * Delta.

G = AES-128-CTR (:class:`.ot.ColumnPrg`). :func:`tccr` is the fixed-key-AES tweakable
correlation-robust hash of Guo, Katz, Wang, Yu (S&P 2020), which turns a COT into a
random OT: the Delta holder's two messages are tccr(j, q_j) and tccr(j, q_j + Delta),
the other party knows only tccr(j, t_j), the one of its choice.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from veil.errors import ProtocolError
from veil.protocols.psi import ot

WIDTH = 128  # base OTs = bits of Delta
ROW_ALIGN = 128  # COTs come in multiples of this
_TCCR_KEY = bytes.fromhex("7665696c2d766f6c652d74636372ab01")  # public, fixed


def _bit_reverse_table() -> np.ndarray:
    v = np.arange(256, dtype=np.uint8)
    return np.packbits(np.unpackbits(v[:, None], axis=1)[:, ::-1], axis=1).ravel()


_REV = _bit_reverse_table()


def padded(m: int) -> int:
    """The number of COT rows actually produced for m requested (a multiple of 128)."""
    return max(ROW_ALIGN, -(-m // ROW_ALIGN) * ROW_ALIGN)


def _rows(cols: np.ndarray) -> np.ndarray:
    """(128, m/8) column bytes (MSB first) -> (m, 2) GF(2^128) elements, bit i = column i."""
    rows = ot.transpose_bits(cols)  # (m, 16), bit i of a row at byte i//8, MSB first
    return np.ascontiguousarray(_REV[rows]).view("<u8").astype(np.uint64).reshape(-1, 2)


def delta_choices(delta: np.ndarray) -> np.ndarray:
    """The 128 base-OT choice bits of the Delta holder: bit i of Delta."""
    raw = np.frombuffer(delta.astype("<u8").tobytes(), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")


def extend_receiver(
    key_pairs: list[tuple[bytes, bytes]], choices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The chooser's side for choice bits ``choices`` (0/1, length a multiple of 128):
    the message u (128 x m/8 bytes) and its rows t (m, 2)."""
    return ExtendReceiver(key_pairs).next(choices)


def extend_sender(keys: list[bytes], delta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The Delta holder's rows q (m, 2) from its base-OT keys and the message u."""
    return ExtendSender(keys, delta).next(u)


class ExtendReceiver:
    """The chooser's side of one extension made in segments: each :meth:`next` continues
    the column streams, so the segments together are one extension (rows in order)."""

    def __init__(self, key_pairs: list[tuple[bytes, bytes]]) -> None:
        if len(key_pairs) != WIDTH:
            raise ValueError(f"need {WIDTH} base OTs")
        self._g0 = ot.ColumnPrg([k0 for k0, _ in key_pairs])
        self._g1 = ot.ColumnPrg([k1 for _, k1 in key_pairs])

    def next(self, choices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The segment's message u (128 x m/8 bytes) and rows t (m, 2) for its m choice
        bits (a multiple of 128)."""
        m = len(choices)
        if m % ROW_ALIGN:
            raise ValueError(f"need a multiple of {ROW_ALIGN} choices")
        t_cols = self._g0.next(m // 8)
        u = t_cols ^ self._g1.next(m // 8) ^ np.packbits(choices.astype(np.uint8))[None, :]
        return u, _rows(t_cols)


class ExtendSender:
    """The Delta holder's side of an extension made in segments (:class:`ExtendReceiver`)."""

    def __init__(self, keys: list[bytes], delta: np.ndarray) -> None:
        self._g = ot.ColumnPrg(keys)
        self._bits = delta_choices(delta).astype(bool)

    def next(self, u: np.ndarray) -> np.ndarray:
        """The segment's rows q (m, 2) from its message u."""
        if u.dtype != np.uint8 or u.ndim != 2 or u.shape[0] != WIDTH or u.shape[1] % 16:
            raise ProtocolError(f"COT extension message of shape {u.shape}, dtype {u.dtype}")
        q_cols = self._g.next(u.shape[1])
        q_cols[self._bits] ^= u[self._bits]
        return _rows(q_cols)


def tccr(index: np.ndarray, x: np.ndarray) -> np.ndarray:
    """pi(pi(x) ^ i) ^ pi(x) for each row: pi = AES-128 under a fixed public key, i the
    row's 64-bit tweak (in the low word)."""
    aes = Cipher(algorithms.AES(_TCCR_KEY), modes.ECB())
    enc = aes.encryptor()
    y = np.frombuffer(enc.update(x.astype("<u8").tobytes()), dtype="<u8").reshape(-1, 2)
    tweaked = y.copy()
    tweaked[:, 0] ^= index.astype("<u8")
    z = np.frombuffer(enc.update(tweaked.tobytes()), dtype="<u8").reshape(-1, 2)
    out: np.ndarray = (z ^ y).astype(np.uint64)
    return out
