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

from veil.crypto import encoding
from veil.crypto.he import HEScheme
from veil.errors import ConfigError, ProtocolError

STAT_BITS = 40
"""Statistical hiding of masks: masked values are within 2^-STAT_BITS of uniform."""

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


class Prefill:
    """Randomisers for a party's next own-key encryption, made while it waits on its peer.

    ``start(count)`` fills the key's randomiser pool in the background (the offline phase);
    the next encryption takes them from the pool as they land, ``wait()`` joins the fill.
    """

    def __init__(self, sk: Any) -> None:
        self._fill = sk.public_key.precompute_async
        self._pending: Any = None

    def start(self, count: int) -> None:
        self.wait()
        if count > 0:
            self._pending = self._fill(count)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()


def matmul(c: Any, X: np.ndarray, bits: int) -> Any:
    """``[[c]] @ X`` for ``c`` (n,) and plaintext ``X`` (n, k), ``X`` rounded to ``bits``
    significant bits of its largest |value| (``LROptions.feature_bits``).

    A column with few distinct values (binary, categorical, WOE-binned: every column of a
    credit job after binning) is summed per value, ``sum_v v * sum_{x_i = v} [[c_i]]``:
    about ``n`` products plus one short power per value. Other columns go through
    Pippenger's method (:meth:`EncryptedArray.matmul`). Both paths take the same rounded
    integers and give the same ciphertexts.
    """
    Xa = np.ascontiguousarray(X, dtype=np.float64)
    if Xa.ndim != 2 or Xa.shape[0] != len(c):
        raise ConfigError("hetero_lr", f"features of shape {Xa.shape} for {len(c)} rows")
    ints, f = encoding.encode_multiplier(Xa, bits=bits, field="X")
    if encoding.max_abs_int(ints) >= 1 << 62:  # huge integer-valued features: no rounding
        return c.matmul(Xa, bits=bits)
    K = ints.astype(np.int64)
    n, k = K.shape
    ct = np.empty(k, dtype=object)
    cols = [np.unique(K[:, j], return_inverse=True) for j in range(k)]
    few = [j for j in range(k) if _bucket_cost(len(cols[j][0]), n, bits) < _pippenger_cost(n, bits)]
    many = [j for j in range(k) if j not in few]
    if many:
        ct[many] = c.matmul(K[:, many]).ct
    if few:
        ct[few] = _value_sums(c, [cols[j] for j in few])
    l1 = np.abs(K).sum(axis=0)
    bound = int(c.bound) * int(l1.max(initial=0))
    c.pk.check_bound(bound, "[[d]] @ X")
    EncryptedArray = _engine("encrypted").EncryptedArray
    return EncryptedArray(c.pk, ct, c.frac_bits + f, True, bound)


def _pippenger_cost(n: int, bits: int) -> float:
    """Modular products of one column in Pippenger's method: per 8-bit window, ``n`` into
    the buckets and two running products over 2^8 buckets for each sign."""
    windows = -(-bits // 8)  # the rounded features are below 2^bits in magnitude
    return float(windows * (n + 4 * 2**8))


def _bucket_cost(values: int, n: int, bits: int) -> float:
    """Products of one column summed per distinct value: ``n`` + a power per value."""
    return n + values * 1.5 * (bits + 1)


def _value_sums(c: Any, cols: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``prod_i [[c_i]]^K_ij`` per column, given each column's (values, value index)."""
    width = max(len(v) for v, _ in cols)
    groups = np.stack([inv.reshape(-1) for _, inv in cols], axis=1).astype(np.int64)
    sums = c.group_sum(groups, width)  # sums[f * width + g]: rows of column f with value g
    keep = np.concatenate([f * width + np.arange(len(v)) for f, (v, _) in enumerate(cols)])
    owner = np.concatenate([np.full(len(v), f, dtype=np.int64) for f, (v, _) in enumerate(cols)])
    powers = np.concatenate([v for v, _ in cols]).astype(object)
    return np.asarray((sums[keep] * powers).group_sum(owner, len(cols)).ct)


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
