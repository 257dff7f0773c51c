"""The homomorphic operations vertical LR needs, on :mod:`veil.crypto.he`, behind one seam.

The protocols call only these functions, so the scheme (``paillier`` or ``ou``) is a
parameter and a later secret-sharing mode can replace this module. Key sizes are checked
against the :class:`~veil.policy.SecurityPolicy` (first under the option's name
``hetero_lr.key_bits``, then by the engine itself).

Masked decryption. A party holding ``[[g]]`` under a peer's key adds a fresh
encryption of an integer mask ``r`` drawn by :mod:`secrets` uniformly from
``[-2^s B, 2^s B]`` (``B`` the array's proven bound on ``|encoded g|``, ``s`` the
policy's ``stat_sec``), in the fixed-point domain, so ``g + r`` is within statistical
distance 2^-s of ``r`` alone. The key holder returns the exact signed integer
plaintexts, and only if they lie within the declared bound, far below the plaintext
modulus: a crafted ciphertext (the chosen-ciphertext attack that factors an OU modulus)
would decrypt far outside it and gets a :class:`ProtocolError` instead of an answer.
Unmasking is exact.
"""

from __future__ import annotations

import secrets
from concurrent.futures import Future

import numpy as np
import numpy.typing as npt

from veil.crypto import encoding
from veil.crypto import he as engine
from veil.crypto.he import EncryptedArray, HEPublicKey, HEScheme, HESecretKey
from veil.errors import ConfigError, ProtocolError
from veil.policy import SecurityPolicy

FloatArray = npt.NDArray[np.float64]

MAX_MASKED_BITS = 400
"""A key holder decrypts masked arrays only if their declared bound is below 2^400."""

KEY_FIELD = "hetero_lr.key_bits"


def keygen(scheme: HEScheme, bits: int, policy: SecurityPolicy) -> tuple[HEPublicKey, HESecretKey]:
    """A fresh key pair of ``bits`` bits, refused below the policy's minimum."""
    policy.check_key_bits(str(scheme), bits, KEY_FIELD)
    return engine.generate_keypair(scheme, bits, policy=policy)


def peer_key(obj: object, scheme: HEScheme, bits: int, policy: SecurityPolicy) -> HEPublicKey:
    """A peer's public key: of ``scheme``, at least ``bits`` bits and the policy's minimum
    (:class:`ProtocolError` otherwise)."""
    try:
        pk = engine.public_key_from_wire(obj, policy)
    except ConfigError as e:
        raise ProtocolError(f"peer key refused: {e}") from e
    if pk.scheme != str(scheme) or pk.bits < bits:
        raise ProtocolError(f"peer key is {pk.scheme}-{pk.bits}, expected {scheme}-{bits}")
    return pk


def encrypt(pk: HEPublicKey, x: npt.ArrayLike) -> EncryptedArray:
    """Encrypt a float vector at the engine's fixed point."""
    return pk.encrypt(np.asarray(x, dtype=np.float64))


class Prefill:
    """Randomisers for a party's next own-key encryption, made while it waits on its peer.

    ``start(count)`` fills the key's randomiser pool in the background (the offline phase);
    the next encryption takes them from the pool as they land, ``wait()`` joins the fill.
    """

    def __init__(self, pk: HEPublicKey) -> None:
        self._pk = pk
        self._pending: Future[None] | None = None

    def start(self, count: int) -> None:
        self.wait()
        if count > 0:
            self._pending = self._pk.precompute_async(count)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()


def matmul(c: EncryptedArray, X: FloatArray, bits: int) -> EncryptedArray:
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
    return EncryptedArray(c.pk, ct, c.frac_bits + f, True, bound)


def _pippenger_cost(n: int, bits: int) -> float:
    """Modular products of one column in Pippenger's method: per 8-bit window, ``n`` into
    the buckets and two running products over 2^8 buckets for each sign."""
    windows = -(-bits // 8)  # the rounded features are below 2^bits in magnitude
    return float(windows * (n + 4 * 2**8))


def _bucket_cost(values: int, n: int, bits: int) -> float:
    """Products of one column summed per distinct value: ``n`` + a power per value."""
    return n + values * 1.5 * (bits + 1)


def _value_sums(c: EncryptedArray, cols: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``prod_i [[c_i]]^K_ij`` per column, given each column's (values, value index)."""
    width = max(len(v) for v, _ in cols)
    groups = np.stack([inv.reshape(-1) for _, inv in cols], axis=1).astype(np.int64)
    sums = c.group_sum(groups, width)  # sums[f * width + g]: rows of column f with value g
    keep = np.concatenate([f * width + np.arange(len(v)) for f, (v, _) in enumerate(cols)])
    owner = np.concatenate([np.full(len(v), f, dtype=np.int64) for f, (v, _) in enumerate(cols)])
    powers = np.concatenate([v for v, _ in cols]).astype(object)
    return np.asarray((sums[keep] * powers).group_sum(owner, len(cols)).ct)


def random_mask(bound: int) -> int:
    """A uniform integer in ``[-bound, bound]`` from :mod:`secrets`."""
    return secrets.randbelow(2 * bound + 1) - bound


def add_mask(c: EncryptedArray, stat_sec: int) -> tuple[EncryptedArray, list[int]]:
    """``[[c + r]]`` with a fresh integer mask ``r`` (returned) ``2^stat_sec`` times wider
    than ``c``'s bound, so ``c + r`` is statistically hiding."""
    pk = c.pk
    bound = int(c.bound) << stat_sec
    if (bound << 1).bit_length() > MAX_MASKED_BITS:
        raise ConfigError(
            "hetero_lr", "gradient bound too large to mask", "lower batch_size or clip features"
        )
    r = [random_mask(bound) for _ in range(c.size)]
    rc = EncryptedArray(
        pk, pk.raw_encrypt(np.array(r, dtype=object)), c.frac_bits, c.is_float, bound
    )
    return c + rc, r


def decrypt_bounded(sk: HESecretKey, c: EncryptedArray) -> list[int]:
    """Exact signed plaintexts of an array, refused if outside its declared bound (or
    if that bound is above 2^400)."""
    bound = int(c.bound)
    if bound.bit_length() > MAX_MASKED_BITS:
        raise ProtocolError("array declares a bound above 2^400; refusing to decrypt")
    raw, n = sk.raw_decrypt(c.ct.ravel(), 2 * bound + 1)
    out = []
    for v in raw:
        s = int(v) - n if int(v) > n // 2 else int(v)
        if abs(s) > bound:
            raise ProtocolError("value outside its declared bound; refusing it")
        out.append(s)
    return out


def unmask(values: list[int], mask: list[int], frac_bits: int) -> FloatArray:
    """``(values - mask) / 2^frac_bits`` as float64 (``values`` already length-checked)."""
    return np.array([(v - m) / (1 << frac_bits) for v, m in zip(values, mask, strict=True)])
