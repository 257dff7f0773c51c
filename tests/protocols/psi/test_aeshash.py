"""Bulk AES hashing of RR22-PSI: the id digests are exactly CBC-MAC over the length block
and the zero-padded id (checked block by block against OpenSSL), whatever the lengths,
the chunking and the grouping; MMO is AES_k(x) ^ x."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from veil.protocols.psi import aeshash

KEY = bytes(range(16))


def reference_digest(x: bytes, key: bytes = KEY) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    state = enc.update(len(x).to_bytes(8, "little") + (0x6C2D_6469_2D6C_6965).to_bytes(8, "little"))
    padded = x + bytes(-len(x) % 16)
    for j in range(0, len(padded), 16):
        state = enc.update(bytes(a ^ b for a, b in zip(state, padded[j : j + 16], strict=True)))
    return state


@pytest.mark.parametrize("chunk", [7, 64, aeshash.CHUNK])
def test_digests_match_the_reference(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(aeshash, "CHUNK", chunk)
    rng = random.Random(1)
    items = [b"", b"a", b"a\x00", b"\x00", b"x" * 16, b"x" * 17, b"y" * 300, b"a"]
    items += [rng.randbytes(rng.choice([0, 3, 15, 16, 31, 33, 64, 65, 200])) for _ in range(300)]
    got = aeshash.id_digests(items, KEY)
    assert got.shape == (len(items), 2) and got.dtype == np.uint64
    for x, row in zip(items, got, strict=True):
        assert row.astype("<u8").tobytes() == reference_digest(x), x
    assert aeshash.id_digests([], KEY).shape == (0, 2)


def test_digests_separate_lengths_and_keys() -> None:
    items = [b"a", b"a\x00", b"a\x00\x00", b"", b"\x00" * 16]
    d = aeshash.id_digests(items, KEY)
    assert len({tuple(r) for r in d.tolist()}) == len(items)  # trailing NULs count
    other = aeshash.id_digests(items, os.urandom(16))
    assert not (d == other).all(axis=1).any()


def test_mmo_is_aes_xor_input() -> None:
    x = np.frombuffer(os.urandom(16 * 50), dtype=np.uint64).reshape(50, 2)
    enc = Cipher(algorithms.AES(KEY), modes.ECB()).encryptor()
    want = np.frombuffer(enc.update(x.tobytes()), dtype=np.uint64).reshape(50, 2) ^ x
    assert np.array_equal(aeshash.mmo(KEY, x), want)
