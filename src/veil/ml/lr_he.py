"""The homomorphic operations vertical LR needs, on :mod:`veil.crypto.he`, behind one seam.

The protocol calls only these functions, so the scheme (``paillier`` or ``ou``) is a
parameter and a later secret-sharing mode can replace this module.

Masked decryption. A party holding ``[[g]]`` under a peer's key adds a fresh
encryption of an integer mask ``r`` drawn by :mod:`secrets` uniformly from
``[-2^40 B, 2^40 B]`` (``B`` the array's proven bound on ``|encoded g|``), in the
fixed-point domain, so ``g + r`` is within statistical distance 2^-40 of ``r`` alone.
The key holder returns the exact signed integer plaintexts, and only if they lie
within the declared bound, far below the plaintext modulus: a crafted ciphertext
(the chosen-ciphertext attack that factors an OU modulus) would decrypt far outside
it and gets a :class:`ProtocolError` instead of an answer. Unmasking is exact.
"""

from __future__ import annotations

import importlib
import secrets
from typing import Any

import numpy as np

from veil.crypto.he import HEScheme
from veil.errors import ConfigError, ProtocolError

STAT_BITS = 40
"""Statistical hiding of masks: masked values are within 2^-STAT_BITS of uniform."""

MATMUL_BITS = 16
"""Significant bits of the plaintext features in ``[[d]] @ X``: features are rounded to
2^-16 of the block's largest |value| (4.6e-5 for features clipped at 3), which halves
the Pippenger windows of the encrypted gradient against 32 bits."""

MAX_MASKED_BITS = 400
"""A key holder decrypts masked arrays only if their declared bound is below 2^400."""


def _engine(name: str = "he") -> Any:
    """``veil.crypto.he`` (or ``.encrypted``), imported on first use."""
    try:
        return importlib.import_module(f"veil.crypto.{name}")
    except ImportError as e:  # pragma: no cover - the engine ships with Veil
        raise ConfigError("hetero_lr.he", f"HE engine unavailable ({e})", "install veil") from e


def _policy(bits: int) -> Any:
    eng = _engine()
    return eng.TEST_POLICY if bits < 2048 else eng.DEFAULT_POLICY


def keygen(he: HEScheme, bits: int) -> tuple[Any, Any]:
    """A fresh key pair of ``bits`` bits (below 2048 only through ``test_key_bits``)."""
    pk, sk = _engine().generate_keypair(str(he), bits, policy=_policy(bits))
    return pk, sk


def pk_to_wire(pk: Any) -> Any:
    return pk.to_wire()


def pk_from_wire(he: HEScheme, obj: Any, bits: int) -> Any:
    """A peer's public key; it must be of scheme ``he`` and at least ``bits`` bits."""
    pk = _engine().public_key_from_wire(obj, _policy(bits))
    if pk.scheme != str(he) or pk.bits < bits:
        raise ProtocolError(f"peer key is {pk.scheme}-{pk.bits}, expected {he}-{bits}")
    return pk


def ct_to_wire(c: Any) -> Any:
    return c.to_wire()


def ct_from_wire(pk: Any, obj: Any) -> Any:
    return _engine("encrypted").EncryptedArray.from_wire(pk, obj)


def encrypt(pk: Any, x: np.ndarray) -> Any:
    return pk.encrypt(np.asarray(x, dtype=np.float64))


def matmul(c: Any, X: np.ndarray) -> Any:
    """``[[c]] @ X`` for ``c`` (n,) and plaintext ``X`` (n, k)."""
    return c.matmul(np.ascontiguousarray(X, dtype=np.float64), bits=MATMUL_BITS)


def add_mask(c: Any) -> tuple[Any, list[int]]:
    """``[[c + r]]`` with a fresh statistically hiding integer mask ``r`` (returned)."""
    EncryptedArray = _engine("encrypted").EncryptedArray
    pk = c.pk
    bound = int(c.bound) << STAT_BITS
    if (bound << 1).bit_length() > MAX_MASKED_BITS:
        raise ConfigError(
            "hetero_lr", "gradient bound too large to mask", "lower batch_size or clip features"
        )
    r = [secrets.randbelow(2 * bound + 1) - bound for _ in range(c.size)]
    rc = EncryptedArray(
        pk, pk.raw_encrypt(np.array(r, dtype=object)), c.frac_bits, c.is_float, bound
    )
    return c + rc, r


def decrypt_masked(sk: Any, c: Any) -> list[int]:
    """Exact signed plaintexts of a masked array, refused if outside its declared bound."""
    bound = int(c.bound)
    if bound.bit_length() > MAX_MASKED_BITS:
        raise ProtocolError("masked array declares a bound above 2^400; refusing to decrypt")
    raw, n = sk.raw_decrypt(c.ct.ravel(), 2 * bound + 1)
    out = []
    for v in raw:
        s = int(v) - n if int(v) > n // 2 else int(v)
        if abs(s) > bound:
            raise ProtocolError("masked value outside its bound; refusing to return it")
        out.append(s)
    return out


def unmask(values: Any, mask: list[int], frac_bits: int) -> np.ndarray:
    """``(values - mask) / 2^frac_bits`` as float64, after checking the reply's shape."""
    if not isinstance(values, list) or len(values) != len(mask):
        raise ProtocolError(f"expected {len(mask)} integers, got {type(values).__name__}")
    if not all(isinstance(v, int) for v in values):
        raise ProtocolError("masked reply holds non-integers")
    return np.array([(v - m) / (1 << frac_bits) for v, m in zip(values, mask, strict=True)])
