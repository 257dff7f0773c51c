"""Banded OKVS over GF(2) with 128-bit values: the key-value store of RR22-PSI.

An oblivious key-value store (OKVS) encodes n (key, value) pairs into a vector P of m
128-bit entries such that ``decode(P, key) == value`` for every encoded key, while P
of random values is uniform and says nothing about the keys (Raghuraman and Rindal,
"Blazing fast PSI from improved OKVS and subfield VOLE", CCS 2022, section 3). This is
the *banded* construction of Bienstock, Patel, Seo and Yeo ("Near-optimal oblivious
key-value stores for efficient PSI, PSU and volume-hiding multi-maps", USENIX Security
2023), i.e. the ribbon retrieval of Dietzfelbinger and Walzer (ESA 2019):

- A key hashes (:func:`rows`: BLAKE2b-128 of the key, then AES-128 under the public
  ``seed`` in ECB mode as a PRF, one block per 128 bits of output) to a start
  ``s`` uniform in ``[0, m - w]`` and a band of ``w`` random bits whose first bit is set;
  its row of the m-column matrix is that band at columns ``s .. s + w - 1``.
- :func:`encode` solves ``row(key_i) . P = value_i`` over GF(2) (values are 128-bit
  vectors, XORed alongside): each row is shifted to its first set bit c and either
  becomes column c's pivot or has column c's pivot XORed in, then back substitution
  from the last column; every free column of P is uniform from the OS. Values uniform
  make P uniform.
- :func:`decode` is the XOR of ``P[s + k]`` over the set bits ``k`` of the band, for
  all keys at once: GF(2)-linear in P, as RR22's VOLE step needs.

Parameters and failure bound. Encoding fails iff the n rows are linearly dependent. The
rows are a queue: n/m rows arrive per column and each column serves one, so a backlog
of w columns is what breaks a band. :func:`failure_bits` bounds the failure probability
by ``2^-lambda`` with ``lambda = theta * log2(e) * w - log2(n) - 7`` where theta solves
``(e^theta - 1) / theta = m / n`` (the tail exponent of that queue; about ``2*eps`` for
``m = (1 + eps) n`` small eps). This is a model, not a theorem (BPSY, too, set their
parameters from experiments); the constant 7 is this module's own, chosen so that the
failure rates measured over thousands of small encodings at narrow bands (n = 64..10^4,
w = 64..128) stay below the bound, 2 to 8 bits below it where failures were seen
(tests/protocols/psi/test_okvs.py checks two such points). :func:`params_for` takes w = 128 bits
when that needs eps <= 0.5, else 192 or 256, and the smallest eps (to 1/256) that gives
``lambda >= 40`` (``stat_bits``): w = 128 and m = 1.17 n at n = 10^3, 1.21 n at
10^6, 1.22 n at 10^7. The bound is also capped at ``m - n - 1`` bits (a dense n x m
block fails with probability about ``2^-(m - n)``), which binds for n near w.

The two loops run in an optional C helper (:mod:`._okvs`, built by ``pip install``),
trusted only after it reproduced the pure-Python/numpy fallback on random inputs; with
``VEIL_NATIVE=0`` or no compiler the fallback gives the same results, slower (at 10^5
keys about 35x for encode and 25x for decode, in CPU time; benchmarks/okvs.py).
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from veil.errors import ConfigError

__all__ = [
    "OkvsFailure",
    "OkvsParams",
    "decode",
    "encode",
    "failure_bits",
    "key_digests",
    "native_status",
    "params_for",
    "rows",
]

SEED_BYTES = 16
_LOSS_BITS = 7.0  # the bound's constant, measured (module docstring)
_WIDTHS = (128, 192, 256)
_MAX_WORDS = 8


class OkvsFailure(ArithmeticError):
    """The keys' rows are linearly dependent under this seed: encode again with a fresh
    seed (probability at most ``2^-failure_bits``)."""


@dataclass(frozen=True)
class OkvsParams:
    """n keys, m columns, band width w (a multiple of 64, at most 512)."""

    n: int
    m: int
    w: int

    @property
    def words(self) -> int:
        return self.w // 64


def _theta(ratio: float) -> float:
    """The root theta > 0 of (e^theta - 1) / theta = ratio (ratio = m / n > 1)."""
    lo, hi = 1e-12, 64.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if math.expm1(mid) / mid < ratio:
            lo = mid
        else:
            hi = mid
    return lo


def failure_bits(n: int, m: int, w: int) -> float:
    """-log2 of the bound on the probability that n keys do not encode into m columns
    with bands of w bits (module docstring); 0 when there is no guarantee."""
    if n <= 1:
        return math.inf if m >= w else 0.0
    if m <= n or m < w:
        return 0.0
    bits = _theta(m / n) * math.log2(math.e) * w - math.log2(n) - _LOSS_BITS
    return max(min(bits, m - n - 1.0), 0.0)  # never more than a dense n x m matrix


def params_for(n: int, *, stat_bits: int = 40, w: int | None = None) -> OkvsParams:
    """The parameters for n keys at failure probability ``2^-stat_bits``: the band width
    ``w`` (default: 128, or 192/256 when 128 needs more than 50 % extra columns) and the
    fewest columns ``m = (1 + eps) n``, eps a multiple of 1/256, that reach it."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError("n", f"must be a non-negative integer, got {n!r}")
    if isinstance(stat_bits, bool) or not isinstance(stat_bits, int) or not 1 <= stat_bits <= 128:
        raise ConfigError("stat_bits", f"must be an integer in 1..128, got {stat_bits!r}")
    if w is not None and (
        isinstance(w, bool) or not isinstance(w, int) or w % 64 or not 64 <= w <= 64 * _MAX_WORDS
    ):
        raise ConfigError("w", f"must be a multiple of 64 in 64..512, got {w!r}")
    widths = (w,) if w is not None else _WIDTHS
    for width in widths:
        for k in range(1, 256 * 8 + 1):  # eps = k / 256 up to 8
            m = max(n + (n * k + 255) // 256, width)
            if failure_bits(n, m, width) >= stat_bits:
                if w is None and k > 128 and width != widths[-1]:
                    break  # over 50 % extra columns: try a wider band
                return OkvsParams(n=n, m=m, w=width)
    raise ConfigError("w", f"no m up to 9n reaches 2^-{stat_bits} for n={n}", "use a wider band")


def key_digests(keys: Sequence[str | bytes]) -> np.ndarray:
    """BLAKE2b-128 of each key (str as UTF-8): an (n, 16) uint8 array."""
    out = bytearray(16 * len(keys))
    b2 = hashlib.blake2b
    for i, key in enumerate(keys):
        if isinstance(key, str):
            data: bytes | bytearray | memoryview = key.encode("utf-8")
        elif isinstance(key, bytes | bytearray | memoryview):
            data = key
        else:
            raise ConfigError(f"keys[{i}]", f"must be str or bytes, got {type(key).__name__}")
        out[16 * i : 16 * i + 16] = b2(data, digest_size=16).digest()
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(len(keys), 16)


def _as_digests(keys: Sequence[str | bytes] | np.ndarray) -> np.ndarray:
    if isinstance(keys, np.ndarray):
        if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != 16:
            raise ConfigError(
                "keys", f"an array must be (n, 16) uint8 digests, got {keys.shape} {keys.dtype}"
            )
        return np.ascontiguousarray(keys)
    return key_digests(keys)


def _check_seed(seed: bytes) -> None:
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        raise ConfigError("seed", f"must be {SEED_BYTES} bytes", "use secrets.token_bytes(16)")


def _check_params(params: OkvsParams) -> None:
    if not isinstance(params, OkvsParams):
        raise ConfigError("params", "must be an OkvsParams (see params_for)")
    if params.w % 64 or not 64 <= params.w <= 64 * _MAX_WORDS or params.m < params.w:
        raise ConfigError("params", f"w={params.w}, m={params.m}: need w in 64..512, m >= w")


_ROWS_CHUNK = 1 << 18  # keys per AES call in rows()


def rows(
    keys: Sequence[str | bytes] | np.ndarray, seed: bytes, params: OkvsParams
) -> tuple[np.ndarray, np.ndarray]:
    """Each key's start (int64, in ``[0, m - w]``) and band ((n, w/64) uint64, bit 0 of
    word 0 set), from AES-128(seed) of its 128-bit digest (blocks ``digest ^ j``)."""
    _check_seed(seed)
    _check_params(params)
    digests = _as_digests(keys)
    n, nw = len(digests), params.words
    blocks = 1 + (params.w + 63) // 128  # 64 bits of start, then the band
    enc = Cipher(algorithms.AES(seed), modes.ECB()).encryptor()  # a PRF on distinct blocks
    starts = np.empty(n, dtype=np.int64)
    bands = np.empty((n, nw), dtype=np.uint64)
    tweak = np.arange(blocks, dtype=np.uint8)
    for lo in range(0, n, _ROWS_CHUNK):  # by chunks: the AES temporaries stay small
        part = digests[lo : lo + _ROWS_CHUNK]
        inp = np.repeat(part, blocks, axis=0)
        inp[:, 0] ^= np.tile(tweak, len(part))
        words = np.frombuffer(enc.update(inp.tobytes()), dtype="<u8").reshape(-1, 2 * blocks)
        starts[lo : lo + len(part)] = words[:, 0] % np.uint64(params.m - params.w + 1)
        bands[lo : lo + len(part)] = words[:, 1 : 1 + nw]
    enc.finalize()
    bands[:, 0] |= np.uint64(1)
    return starts, bands


def _check_values(values: np.ndarray, n: int) -> np.ndarray:
    if not isinstance(values, np.ndarray):
        raise ConfigError("values", f"must be a numpy array, got {type(values).__name__}")
    if values.dtype == np.uint8 and values.shape == (n, 16):
        return np.ascontiguousarray(values).view("<u8").reshape(n, 2)
    if values.dtype != np.uint64 or values.shape != (n, 2):
        raise ConfigError(
            "values",
            f"must be ({n}, 2) uint64 or ({n}, 16) uint8, got {values.shape} {values.dtype}",
        )
    return np.ascontiguousarray(values)


def _check_distinct(digests: np.ndarray) -> None:
    if len(digests) < 2:
        return
    v = digests.view("<u8").reshape(-1, 2)
    low = np.sort(v[:, 0])
    if not (low[1:] == low[:-1]).any():
        return  # the usual case, decided on 64 bits with one sort
    order = np.lexsort((v[:, 1], v[:, 0]))
    s = v[order]
    same = np.flatnonzero((s[1:] == s[:-1]).all(axis=1))
    if len(same):
        first = int(order[same[0]])
        second = int(order[same[0] + 1])
        raise ConfigError(
            "keys",
            f"duplicate key at positions {min(first, second)} and {max(first, second)}",
            "encode each key once",
        )


def encode(
    keys: Sequence[str | bytes] | np.ndarray,
    values: np.ndarray,
    seed: bytes,
    params: OkvsParams | None = None,
) -> np.ndarray:
    """The (m, 2) uint64 vector P with ``decode(P, keys, seed, params) == values``.

    ``keys``: distinct str/bytes, or their (n, 16) uint8 :func:`key_digests`;
    ``values``: (n, 2) uint64 or (n, 16) uint8; ``params``: default
    ``params_for(len(keys))``. Raises :class:`OkvsFailure` if the rows are dependent."""
    digests = _as_digests(keys)
    n = len(digests)
    if params is None:
        params = params_for(n)
    _check_params(params)
    if params.n != n:
        raise ConfigError("params", f"made for n={params.n}, got {n} keys")
    vals = _check_values(values, n)
    _check_distinct(digests)
    starts, bands = rows(digests, seed, params)
    x = np.frombuffer(os.urandom(16 * params.m), dtype="<u8").reshape(params.m, 2).copy()
    native = _native()
    if native is not None:
        ok = native.solve(starts, bands, vals, params.m, params.words, x) == 0
    else:
        ok = _solve_py(starts, bands, vals, params.m, x)
    if not ok:
        raise OkvsFailure(f"{n} keys did not encode into {params.m} columns: use a new seed")
    return x


def decode(
    okvs: np.ndarray,
    keys: Sequence[str | bytes] | np.ndarray,
    seed: bytes,
    params: OkvsParams,
) -> np.ndarray:
    """The (n, 2) uint64 values of ``keys`` in ``okvs`` (random-looking for keys that were
    not encoded)."""
    _check_params(params)
    if not isinstance(okvs, np.ndarray) or okvs.dtype != np.uint64 or okvs.shape != (params.m, 2):
        shape = getattr(okvs, "shape", None)
        raise ConfigError("okvs", f"must be ({params.m}, 2) uint64, got {shape}")
    starts, bands = rows(keys, seed, params)
    x = np.ascontiguousarray(okvs)
    native = _native()
    if native is not None:
        out = np.empty((len(starts), 2), dtype=np.uint64)
        native.decode(x, starts, bands, params.words, out)
        return out
    return _decode_np(x, starts, bands)


def _solve_py(
    starts: np.ndarray, bands: np.ndarray, values: np.ndarray, m: int, x: np.ndarray
) -> bool:
    """The elimination of ``_okvs.solve`` with Python integers (same results)."""
    nw = bands.shape[1]
    raw = bands.astype("<u8").tobytes()
    vraw = values.astype("<u8").tobytes()
    slot_b = [0] * m
    slot_v = [0] * m
    frm = int.from_bytes
    for i, s in enumerate(starts.tolist()):
        b = frm(raw[8 * nw * i : 8 * nw * (i + 1)], "little")
        v = frm(vraw[16 * i : 16 * i + 16], "little")
        c = s
        while True:
            if b == 0:
                if v:
                    return False
                break
            t = (b & -b).bit_length() - 1
            b >>= t
            c += t
            if not slot_b[c]:
                slot_b[c], slot_v[c] = b, v
                break
            b ^= slot_b[c]
            v ^= slot_v[c]
    xs = [frm(x[k].astype("<u8").tobytes(), "little") for k in range(m)]
    for c in range(m - 1, -1, -1):
        b = slot_b[c]
        if not b:
            continue
        acc, b, k = slot_v[c], b >> 1, c + 1
        while b:
            t = (b & -b).bit_length() - 1
            b >>= t + 1
            k += t
            acc ^= xs[k]
            k += 1
        xs[c] = acc
    flat = b"".join(v.to_bytes(16, "little") for v in xs)
    x[:] = np.frombuffer(flat, dtype="<u8").reshape(m, 2)
    return True


def _decode_np(x: np.ndarray, starts: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """The XOR of ``_okvs.decode`` with numpy, one pass per band bit (same results)."""
    out = np.zeros((len(starts), 2), dtype=np.uint64)
    for j in range(bands.shape[1]):
        word = bands[:, j]
        for bit in range(64):
            mask = ((word >> np.uint64(bit)) & np.uint64(1)).astype(bool)
            if mask.any():
                idx = np.flatnonzero(mask)
                out[idx] ^= x[starts[idx] + 64 * j + bit]
    return out


_LOCK = threading.Lock()
_STATE: dict[str, tuple[ModuleType | None, str]] = {}


def _self_test(mod: ModuleType) -> None:
    """Compare the C helper with the fallback on random inputs (raises on a difference)."""
    for n, w in ((1, 64), (37, 128), (300, 192), (200, 256)):
        params = params_for(n, w=w)
        seed = secrets.token_bytes(SEED_BYTES)
        keys = [secrets.token_bytes(8) for _ in range(n)]
        starts, bands = rows(keys, seed, params)
        vals = np.frombuffer(os.urandom(16 * n), dtype="<u8").reshape(n, 2)
        x0 = np.frombuffer(os.urandom(16 * params.m), dtype="<u8").reshape(params.m, 2)
        xc, xp = x0.copy(), x0.copy()
        rc = mod.solve(starts, bands, vals, params.m, params.words, xc)
        if (rc == 0) != _solve_py(starts, bands, vals, params.m, xp):
            raise ArithmeticError("_okvs.solve disagrees with the fallback on failure")
        if rc == 0 and not np.array_equal(xc, xp):
            raise ArithmeticError("_okvs.solve disagrees with the fallback")
        out = np.empty((n, 2), dtype=np.uint64)
        mod.decode(xc, starts, bands, params.words, out)
        if not np.array_equal(out, _decode_np(xc, starts, bands)):
            raise ArithmeticError("_okvs.decode disagrees with the fallback")


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get("VEIL_NATIVE", "1").strip() == "0":
        return None, "disabled by VEIL_NATIVE=0"
    try:
        mod = importlib.import_module("veil.protocols.psi._okvs")
    except ImportError:
        return None, "not built (no C compiler at install time): numpy/Python fallback"
    try:
        _self_test(mod)
    except (ArithmeticError, ValueError, TypeError) as exc:
        return None, f"failed its self-test ({exc}): numpy/Python fallback"
    return mod, "C helper (checked against the fallback)"


def _native() -> ModuleType | None:
    if "native" not in _STATE:
        with _LOCK:
            if "native" not in _STATE:
                _STATE["native"] = (None, "checking")  # the self-test runs the fallback
                _STATE["native"] = _load()
    return _STATE["native"][0]


def native_status() -> str:
    """Which path :func:`encode`/:func:`decode` use, and why."""
    _native()
    return _STATE["native"][1]
