"""The silent VOLE's compression: dual LPN with an expand-convolute code.

A vector x of length M (the code size: the sparse noise and the GGM leaves, T regular
noise blocks of 2^d entries) is compressed to n outputs by the transposed generator
of a linear code, G * x. Both VOLE parties apply the same public G, so the correlation
c = b + a * Delta survives (G is GF(2)-linear, hence GF(2^128)-linear on vectors), and
a = G * e is pseudorandom under the dual (syndrome-decoding) LPN assumption for
regular noise e of weight T.

The code is expand-convolute, ExConv7x24, [Raghuraman, Rindal, Tanguy, "Expand-Convolute
Codes for Pseudorandom Correlation Generators from LPN", CRYPTO 2023], as libOTe
configures it (``ExConvConfigure``: scaler 2, expander weight 7, accumulator 24,
systematic, accumulated twice): x = (x_0, x_1) with |x_0| = n, |x_1| = S = M - n;
x_1 goes through the convolution twice (:func:`_accumulate_py`: x[i+1+k] ^= x[i] for
24 random bits k of row i, then x[i+25] ^= x[i], indices mod S), then output
i = x_0[i] ^ XOR of x_1 at 7 indices, one in each seventh of x_1 (a regular expander).
All randomness comes from AES-128-CTR under a key fixed by (n, M): the code is public.

Noise weight (libOTe ``getRegNoiseWeight``): with the code's estimated minimum
distance ratio delta = 0.15, linear tests have advantage (1 - 2 delta)^T, so
T >= 128 / -log2(1 - 2 delta) = 249, rounded up to 256 for 128-bit security.
:func:`params_for` takes M >= 2n with blocks of 2^d entries and T >= 256 blocks
(n = 6.25 * 10^5, one of the VOLE's two chunks at 1.25 * 10^6 outputs: d = 12, T = 306,
M = 1 253 376).

The convolution and the expander run in the optional C helper :mod:`._vole` once it
reproduced this module's fallback on load (:func:`.gf128.native`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from veil.errors import ConfigError
from veil.protocols.psi import gf128

SEC_BITS = 128
SCALER = 2
EXPANDER_WEIGHT = 7
ACC_WEIGHT = 24
MIN_DIST = 0.15
MAX_N = 1 << 28


def noise_weight(sec_bits: int = SEC_BITS, min_dist: float = MIN_DIST) -> int:
    """libOTe's getRegNoiseWeight: the least T, a multiple of 8 and >= 40, with
    T * -log2(1 - 2 min_dist) >= sec_bits."""
    t = max(40, math.ceil(-sec_bits / math.log2(1 - 2 * min_dist)))
    return -(-t // 8) * 8


@dataclass(frozen=True)
class LpnParams:
    """n outputs from ``trees`` noise blocks of 2^depth entries each."""

    n: int
    trees: int
    depth: int

    @property
    def size(self) -> int:
        """The code size M: the length of the noise vector."""
        return self.trees << self.depth


def params_for(n: int) -> LpnParams:
    """The code and noise for n VOLE outputs (module docstring)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise ConfigError("n", f"{n!r} VOLE outputs: need an integer in 1..{MAX_N}")
    t0 = noise_weight()
    want = SCALER * n
    depth = max(1, math.floor(math.log2(want / t0))) if want > 2 * t0 else 1
    trees = max(t0, -(-want // (1 << depth)))
    return LpnParams(n, trees, depth)


def _stream(params: LpnParams, label: bytes, nbytes: int) -> np.ndarray:
    h = hashlib.blake2b(digest_size=16, person=b"veil-exconv")
    h.update(label + params.n.to_bytes(8, "little") + params.size.to_bytes(8, "little"))
    enc = Cipher(algorithms.AES(h.digest()), modes.CTR(bytes(16))).encryptor()
    return np.frombuffer(enc.update(bytes(nbytes)), dtype=np.uint8)


def expander_stream(params: LpnParams) -> tuple[np.ndarray, int]:
    """The expander's random words (n * 7 uint32) and the width of its sevenths."""
    n, s, w = params.n, params.size - params.n, EXPANDER_WEIGHT
    return _stream(params, b"expander", 4 * n * w).view("<u4"), s // w


def expander(params: LpnParams) -> np.ndarray:
    """(n, 7) indices into x_1: index k of row i = k * sub + (r_ik * sub >> 32), i.e. in
    the k-th seventh (a regular expander)."""
    rnd, sub = expander_stream(params)
    r64 = rnd.astype(np.uint64).reshape(params.n, EXPANDER_WEIGHT)
    base = (np.arange(EXPANDER_WEIGHT, dtype=np.uint64) * np.uint64(sub))[None, :]
    idx: np.ndarray = (base + ((r64 * np.uint64(sub)) >> np.uint64(32))).astype(np.int64)
    return idx


def acc_bits(params: LpnParams, rnd: int) -> np.ndarray:
    """The convolution's random bits of pass ``rnd``: S rows of 24 bits (3 bytes)."""
    s = params.size - params.n
    return _stream(params, b"accumulate-%d" % rnd, s * ACC_WEIGHT // 8)


def _accumulate_py(x: np.ndarray, bits: np.ndarray) -> None:
    """The convolution, in place, on the rows of x (S, k) uint64: same as _vole's."""
    size, k = x.shape
    raw, w = x.astype("<u8").tobytes(), 8 * k
    ints = [int.from_bytes(raw[i * w : (i + 1) * w], "little") for i in range(size)]
    taps = np.unpackbits(bits.reshape(size, ACC_WEIGHT // 8), axis=1, bitorder="little")
    rows, offs = np.nonzero(taps)
    starts = np.searchsorted(rows, np.arange(size + 1)).tolist()
    offs_l = (offs + 1).tolist()
    for i in range(size):
        xi = ints[i]
        for o in offs_l[starts[i] : starts[i + 1]]:
            ints[(i + o) % size] ^= xi
        ints[(i + ACC_WEIGHT + 1) % size] ^= xi
    raw = b"".join([v.to_bytes(w, "little") for v in ints])
    x[:] = np.frombuffer(raw, dtype="<u8").reshape(size, k)


def _expand_np(x1: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
    for k in range(idx.shape[1]):
        out ^= x1[idx[:, k]]


_CHECKED: dict[str, ModuleType | None] = {}


def _self_test(mod: ModuleType) -> bool:
    """Whether the C convolution and expander reproduce the fallback on random input."""
    for n, cols in ((1, 1), (300, 2)):
        params = params_for(n)
        x = gf128.random(params.size * cols).reshape(params.size, 2 * cols)
        try:
            got = encode(params, x, mod=mod)
        except (ValueError, TypeError):
            return False
        if not np.array_equal(got, encode(params, x, mod=_NONE)):
            return False
    return True


_NONE = ModuleType("_no_native")  # as encode(mod=...): run the fallback (self-test, tests)


def _native() -> ModuleType | None:
    if "mod" not in _CHECKED:
        mod = gf128.native()
        _CHECKED["mod"] = mod if mod is not None and _self_test(mod) else None
    return _CHECKED["mod"]


def native_ok() -> bool:
    """Whether the checked C helper runs the code (else the slower fallback)."""
    return _native() is not None


@dataclass(frozen=True, eq=False)
class Code:
    """The public code's random bits for one LpnParams (reused for several vectors)."""

    params: LpnParams
    acc: tuple[np.ndarray, np.ndarray]  # the two convolution passes' bits
    words: np.ndarray  # the expander's random words
    sub: int  # the width of each seventh of x_1


def code(params: LpnParams) -> Code:
    """Derive the code for ``params`` (AES-CTR under a key fixed by n and M)."""
    words, sub = expander_stream(params)
    return Code(params, (acc_bits(params, 0), acc_bits(params, 1)), words, sub)


def encode(
    params: LpnParams,
    x: np.ndarray,
    *,
    inplace: bool = False,
    the_code: Code | None = None,
    dest: np.ndarray | None = None,
    mod: ModuleType | None = None,
) -> np.ndarray:
    """G * x: x (M, 2 * cols) uint64 (cols = 1 or 2 stacked GF(2^128) vectors) ->
    (n, 2 * cols). x is left unchanged unless ``inplace`` (then it is scratch space and
    no copy of it is made). ``the_code`` saves deriving the code again for another
    vector; ``dest`` (n, 2 * cols) receives the result (else a new array); ``mod``
    overrides the C helper (tests)."""
    m, width = x.shape
    if m != params.size or width not in (2, 4) or x.dtype != np.uint64:
        raise ConfigError("lpn.encode", f"x of shape {x.shape}, expected ({params.size}, 2|4)")
    native = _native() if mod is None else (None if mod is _NONE else mod)
    n = params.n
    if inplace and x.flags.c_contiguous:
        tail, out = x[n:], x[:n]
    else:
        tail = np.array(x[n:], dtype=np.uint64, order="C")  # a copy: x stays unchanged
        out = np.array(x[:n], dtype=np.uint64, order="C")
    g = the_code if the_code is not None and the_code.params == params else code(params)
    for bits in g.acc:
        if native is not None:
            native.accumulate(tail, bits, ACC_WEIGHT, width // 2)
        else:
            _accumulate_py(tail, bits)
    if native is not None:
        native.expand(tail, g.words, EXPANDER_WEIGHT, g.sub, width // 2, out)
    else:
        _expand_np(tail, expander(params), out)
    if dest is not None:
        dest[...] = out
        return dest
    return out.copy() if inplace else out  # a copy: frees the M rows of x
