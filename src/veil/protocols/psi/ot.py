"""Oblivious transfer for KKRT-PSI: base OTs and the KKRT batched-OPRF OT extension.

Pure primitives: nothing here sends or receives; the protocol module moves the
messages. Semi-honest security only.

Base OT [Chou-Orlandi, "The Simplest Protocol for Oblivious Transfer", Latincrypt 2015],
in the prime-order subgroup of edwards25519 via libsodium (PyNaCl exposes no ristretto255;
libsodium's point check rejects small-order and off-subgroup points):
  sender:   a random,  A = aG                                   -> A
  receiver: b_j random, B_j = b_j G + c_j A (choice bit c_j)    -> B_j
  keys:     k_j^0 = H(j, A, B_j, aB_j), k_j^1 = H(j, A, B_j, a(B_j - A));
            the receiver computes k_j^{c_j} = H(j, A, B_j, b_j A) and nothing else.
  H = BLAKE2b-128 with a personalisation string, the index j and the transcript.

OT extension [Kolesnikov-Kumaresan-Rosulek-Trieu, CCS 2016 (KKRT16), after IKNP03]:
with WIDTH = 512 base OTs where the OPRF *sender* plays the base-OT receiver with a
random choice vector s, the OPRF receiver with code words d_i = C(r_i) (one row per
bin) sends, column by column, u^j = G(k_j^0) ^ G(k_j^1) ^ D^j; the sender gets
q^j = G(k_j^{s_j}) ^ s_j u^j, i.e. row-wise q_i = t_i ^ (d_i & s), where t_i are the
rows of the receiver's G(k_j^0) columns. The OPRF value on x at row i is
H(i, q_i ^ (C(x) & s)); it equals the receiver's H(i, t_i) iff C(x) = d_i.
G = AES-128-CTR (OpenSSL via ``cryptography``); C = AES-128 under a key chosen by the
sender, applied to a 15-byte item tag and 4 counter bytes (a pseudorandom code of width
512: two distinct inputs give code words at Hamming distance >= 128 except with
negligible probability, KKRT16 Sec. 4).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from nacl import bindings as sodium
from nacl.exceptions import RuntimeError as SodiumError

from veil.errors import ProtocolError

WIDTH = 512  # code width in bits = number of base OTs
ROW_BYTES = WIDTH // 8
KEY_BYTES = 16
POINT_BYTES = 32
TAG_BYTES = 15  # item tag length; the 16th byte of each code block is a counter
ROW_ALIGN = 128  # OT-extension rows come in multiples of one AES block of column bits
_BASE_OT_PERSON = b"veil-kkrt-bot"


# -- base OT ---------------------------------------------------------------------------


def _random_scalar() -> bytes:
    return bytes(sodium.crypto_core_ed25519_scalar_reduce(secrets.token_bytes(64)))


def _check_point(p: bytes, what: str) -> bytes:
    if len(p) != POINT_BYTES or not sodium.crypto_core_ed25519_is_valid_point(p):
        raise ProtocolError(f"{what} is not a valid edwards25519 point of the prime subgroup")
    return p


def _mul(scalar: bytes, point: bytes) -> bytes:
    try:
        return bytes(sodium.crypto_scalarmult_ed25519_noclamp(scalar, point))
    except SodiumError:  # identity result: only with a malformed peer point
        raise ProtocolError("base OT point multiplication gave the identity") from None


def _ot_key(j: int, a: bytes, b: bytes, shared: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=KEY_BYTES, person=_BASE_OT_PERSON)
    h.update(j.to_bytes(4, "little") + a + b + shared)
    return h.digest()


class BaseOtSender:
    """Chou-Orlandi sender of ``count`` random OTs: gets both keys of each."""

    def __init__(self) -> None:
        self._a = _random_scalar()
        self.message = bytes(sodium.crypto_scalarmult_ed25519_base_noclamp(self._a))

    def keys(self, reply: bytes, count: int) -> list[tuple[bytes, bytes]]:
        """Both keys of each OT from the receiver's concatenated points ``reply``."""
        if len(reply) != count * POINT_BYTES:
            raise ProtocolError(f"base OT reply of {len(reply)} bytes, expected {count * 32}")
        a_pt, out = self.message, []
        a_a = _mul(self._a, a_pt)  # aA, so a(B - A) = aB - aA
        for j in range(count):
            b = _check_point(reply[j * POINT_BYTES : (j + 1) * POINT_BYTES], f"base OT point {j}")
            ab = _mul(self._a, b)
            ab_minus = bytes(sodium.crypto_core_ed25519_sub(ab, a_a))
            out.append((_ot_key(j, a_pt, b, ab), _ot_key(j, a_pt, b, ab_minus)))
        return out


class BaseOtReceiver:
    """Chou-Orlandi receiver with choice bits ``choices``: gets one key of each OT."""

    def __init__(self, choices: np.ndarray) -> None:
        self._choices = [int(c) for c in choices]

    def reply(self, sender_message: bytes) -> tuple[bytes, list[bytes]]:
        """The points to send back, and this party's key of each OT."""
        a_pt = _check_point(sender_message, "base OT sender point")
        pts, keys = [], []
        for j, c in enumerate(self._choices):
            b = _random_scalar()
            bg = bytes(sodium.crypto_scalarmult_ed25519_base_noclamp(b))
            pt = bytes(sodium.crypto_core_ed25519_add(bg, a_pt)) if c else bg
            pts.append(pt)
            keys.append(_ot_key(j, a_pt, pt, _mul(b, a_pt)))
        return b"".join(pts), keys


# -- bit matrices, PRG, code -------------------------------------------------------------

_M1 = np.uint64(0x00AA00AA00AA00AA)
_M2 = np.uint64(0x0000CCCC0000CCCC)
_M3 = np.uint64(0x00000000F0F0F0F0)


def transpose_bits(m: np.ndarray) -> np.ndarray:
    """Transpose a bit matrix held as bytes, most significant bit first (numpy packbits
    order): shape (r, c) bytes = r x 8c bits -> (8c, r/8) bytes; r must be a multiple of 8.
    Works on 8x8 blocks with three mask-and-shift steps (Hacker's Delight 7-3)."""
    r, c = m.shape
    if r % 8:
        raise ValueError(f"transpose_bits needs a multiple of 8 rows, got {r}")
    blocks = np.ascontiguousarray(m.reshape(r // 8, 8, c).transpose(2, 0, 1))
    x = blocks.view("<u8").reshape(c, r // 8).byteswap()
    t = (x ^ (x >> np.uint64(7))) & _M1
    x = x ^ t ^ (t << np.uint64(7))
    t = (x ^ (x >> np.uint64(14))) & _M2
    x = x ^ t ^ (t << np.uint64(14))
    t = (x ^ (x >> np.uint64(28))) & _M3
    x = x ^ t ^ (t << np.uint64(28))
    out = x.byteswap().view(np.uint8).reshape(c, r // 8, 8).transpose(0, 2, 1)
    return np.ascontiguousarray(out).reshape(8 * c, r // 8)


class ColumnPrg:
    """One AES-128-CTR key stream per base-OT key; ``next(n)`` gives each column's next
    ``n`` bytes as rows of a (len(keys), n) byte matrix."""

    def __init__(self, keys: list[bytes]) -> None:
        self._ctx: list[CipherContext] = [
            Cipher(algorithms.AES(k), modes.CTR(bytes(16))).encryptor() for k in keys
        ]

    def next(self, nbytes: int) -> np.ndarray:
        zeros = bytes(nbytes)
        data = b"".join([c.update(zeros) for c in self._ctx])
        return np.frombuffer(bytearray(data), dtype=np.uint8).reshape(len(self._ctx), nbytes)


def code_words(code_key: bytes, tags: np.ndarray, hash_index: np.ndarray) -> np.ndarray:
    """C(tag, i): 512-bit code words, one row per (15-byte tag, hash index < 64)."""
    n = len(tags)
    blocks = np.empty((n, 4, 16), dtype=np.uint8)
    blocks[:, :, :TAG_BYTES] = tags[:, None, :]
    blocks[:, :, TAG_BYTES] = (4 * hash_index.astype(np.uint8))[:, None] + np.arange(4)
    enc = Cipher(algorithms.AES(code_key), modes.ECB()).encryptor()
    out = enc.update(blocks.tobytes()) + enc.finalize()
    return np.frombuffer(out, dtype=np.uint8).reshape(n, ROW_BYTES)


def row_hash(rows: np.ndarray, row_index: np.ndarray, nbytes: int, person: bytes) -> bytes:
    """H(i, row) truncated to ``nbytes`` for each row: BLAKE2b with a personalisation."""
    data = np.empty((len(rows), 8 + ROW_BYTES), dtype=np.uint8)
    data[:, :8] = row_index.astype("<u8").view(np.uint8).reshape(-1, 8)
    data[:, 8:] = rows
    mv, w = memoryview(data.tobytes()), 8 + ROW_BYTES
    b2, end = hashlib.blake2b, len(mv)
    return b"".join(
        [b2(mv[k : k + w], digest_size=nbytes, person=person).digest() for k in range(0, end, w)]
    )


# -- the two halves of the OT extension --------------------------------------------------


@dataclass
class OprfReceiver:
    """KKRT OPRF receiver: the base-OT sender's key pairs; one chunk of rows at a time."""

    key_pairs: list[tuple[bytes, bytes]]

    def __post_init__(self) -> None:
        if len(self.key_pairs) != WIDTH:
            raise ValueError(f"need {WIDTH} base OTs, got {len(self.key_pairs)}")
        self._g0 = ColumnPrg([k0 for k0, _ in self.key_pairs])
        self._g1 = ColumnPrg([k1 for _, k1 in self.key_pairs])

    def chunk(self, code_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the next rows' code words d_i (r x 64 bytes, r a multiple of 128): the
        message u (512 x r/8 bytes, column-wise) and this party's rows t_i (r x 64)."""
        r = len(code_rows)
        if r % ROW_ALIGN:
            raise ValueError(f"rows must come in multiples of {ROW_ALIGN}, got {r}")
        t_cols = self._g0.next(r // 8)
        u = t_cols ^ self._g1.next(r // 8) ^ transpose_bits(code_rows)
        return u, transpose_bits(t_cols)


@dataclass
class OprfSender:
    """KKRT OPRF sender: its base-OT keys for choice vector ``s`` (64 bytes, MSB first)."""

    keys: list[bytes]
    s: np.ndarray

    def __post_init__(self) -> None:
        if len(self.keys) != WIDTH or self.s.shape != (ROW_BYTES,):
            raise ValueError(f"need {WIDTH} base-OT keys and a {ROW_BYTES}-byte choice vector")
        self._g = ColumnPrg(self.keys)
        self._bits = np.unpackbits(self.s).astype(bool)

    def chunk(self, u: np.ndarray) -> np.ndarray:
        """The rows q_i = t_i ^ (d_i & s) for the receiver's next chunk message ``u``."""
        if u.dtype != np.uint8 or u.ndim != 2 or u.shape[0] != WIDTH or u.shape[1] % 16:
            raise ProtocolError(f"OT extension chunk of shape {u.shape}, dtype {u.dtype}")
        q_cols = self._g.next(u.shape[1])
        q_cols[self._bits] ^= u[self._bits]
        return transpose_bits(q_cols)

    def masked(self, q_rows: np.ndarray, code_rows: np.ndarray) -> np.ndarray:
        """q_i ^ (C(x) & s): the input of the OPRF output hash for x at row i."""
        out: np.ndarray = q_rows ^ (code_rows & self.s)
        return out


def random_choices() -> np.ndarray:
    """A uniformly random choice vector s, 64 bytes."""
    return np.frombuffer(secrets.token_bytes(ROW_BYTES), dtype=np.uint8).copy()
