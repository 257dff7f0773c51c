"""Arithmetic in GF(2^128) on numpy vectors: the field of the silent VOLE and RR22-PSI.

Representation (the contract every caller relies on):

- a vector of n elements is a numpy array of ``dtype=np.uint64`` and shape ``(n, 2)``:
  column 0 holds the low 64 bits, column 1 the high 64 bits of the 128-bit
  little-endian integer whose bit i is the coefficient of x^i;
- a single element (e.g. the VOLE's Delta) has shape ``(2,)``;
- the modulus is x^128 + x^7 + x^2 + x + 1 (the GCM polynomial, in the plain bit order,
  not GCM's reflected one); addition is XOR (``a ^ b``).

:func:`mul` (element-wise) and :func:`mul_const` (a vector times one element) run in an
optional C helper (:mod:`._vole`: PCLMULQDQ when the CPU has it, else a portable
carry-less product), trusted only after it reproduced the numpy fallback on random
inputs on load; with ``VEIL_NATIVE=0`` or no compiler the fallback gives the same
results, slower (:func:`mul_const` with 8-bit window tables, :func:`mul` bit by bit).
"""

from __future__ import annotations

import importlib
import os
import threading
from types import ModuleType

import numpy as np

from veil.errors import ConfigError

__all__ = [
    "ELEMENT_BYTES",
    "from_bytes",
    "from_int",
    "mul",
    "mul_const",
    "native_status",
    "random",
    "to_bytes",
    "to_int",
]

ELEMENT_BYTES = 16
_MASK64 = (1 << 64) - 1
_REDUCTION = 0x87  # x^7 + x^2 + x + 1


def _vector(a: object, field: str) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint64 or a.ndim != 2 or a.shape[1] != 2:
        shape = getattr(a, "shape", None)
        dtype = getattr(a, "dtype", type(a).__name__)
        raise ConfigError(field, f"expected a uint64 array of shape (n, 2), got {dtype} {shape}")
    return np.ascontiguousarray(a)


def _element(c: object, field: str) -> np.ndarray:
    if not isinstance(c, np.ndarray) or c.dtype != np.uint64 or c.shape != (2,):
        shape = getattr(c, "shape", None)
        raise ConfigError(field, f"expected one element: a uint64 array of shape (2,), got {shape}")
    return np.ascontiguousarray(c)


# -- conversions ---------------------------------------------------------------------------


def from_bytes(b: bytes) -> np.ndarray:
    """16 bytes per element, little-endian, to an (n, 2) vector."""
    if len(b) % ELEMENT_BYTES:
        raise ConfigError("gf128.from_bytes", f"{len(b)} bytes is not a multiple of 16")
    return np.frombuffer(b, dtype="<u8").astype(np.uint64).reshape(-1, 2)


def to_bytes(a: np.ndarray) -> bytes:
    """An (n, 2) vector or one (2,) element to 16 little-endian bytes per element."""
    if isinstance(a, np.ndarray) and a.shape == (2,):
        a = a.reshape(1, 2)
    return _vector(a, "gf128.to_bytes").astype("<u8").tobytes()


def from_int(v: int) -> np.ndarray:
    """One element, shape (2,), from an integer in [0, 2^128)."""
    if not 0 <= v < 1 << 128:
        raise ConfigError("gf128.from_int", f"{v} is not in [0, 2^128)")
    return np.array([v & _MASK64, v >> 64], dtype=np.uint64)


def to_int(c: np.ndarray) -> int:
    """One (2,) element to its integer."""
    e = _element(c, "gf128.to_int")
    return int(e[0]) | int(e[1]) << 64


def random(n: int) -> np.ndarray:
    """n uniformly random elements from the OS."""
    if n < 0:
        raise ConfigError("gf128.random", f"n = {n} is negative")
    return from_bytes(os.urandom(ELEMENT_BYTES * n)).copy()


# -- numpy fallback ------------------------------------------------------------------------


def _times_x(a: np.ndarray) -> np.ndarray:
    """a * x for a vector (a shift and a conditional reduction)."""
    lo, hi = a[:, 0], a[:, 1]
    carry = hi >> np.uint64(63)
    out = np.empty_like(a)
    out[:, 1] = (hi << np.uint64(1)) | (lo >> np.uint64(63))
    out[:, 0] = (lo << np.uint64(1)) ^ (carry * np.uint64(_REDUCTION))
    return out


def _mul_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise product, one bit of b at a time (128 vector steps)."""
    out = np.zeros_like(a)
    cur = a.copy()
    for word in range(2):
        for bit in range(64):
            mask = np.uint64(0) - ((b[:, word] >> np.uint64(bit)) & np.uint64(1))
            out ^= cur & mask[:, None]
            cur = _times_x(cur)
    return out


def const_tables(c: np.ndarray) -> np.ndarray:
    """The (16, 256, 2) tables T[k][v] = c * v * x^(8k) of :func:`mul_const`'s fallback."""
    tab = np.zeros((16, 256, 2), dtype=np.uint64)
    ck = c.reshape(1, 2).copy()
    for k in range(16):
        for j in range(8):
            tab[k, 1 << j : 2 << j] = tab[k, : 1 << j] ^ ck
            ck = _times_x(ck)
    return tab


def _mul_const_np(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    tab = const_tables(c)
    octets = a.astype("<u8").view(np.uint8).reshape(-1, 16)
    out: np.ndarray = tab[0][octets[:, 0]]
    for k in range(1, 16):
        out ^= tab[k][octets[:, k]]
    return out


# -- the C helper, checked on load ------------------------------------------------------------


_LOCK = threading.Lock()
_STATE: dict[str, tuple[ModuleType | None, str]] = {}


def _self_test(mod: ModuleType) -> None:
    """Compare the C helper with the fallback on random and edge inputs (raises)."""
    edge = np.array(
        [[0, 0], [1, 0], [0, 1 << 63], [_MASK64, _MASK64], [_REDUCTION, 0], [0, 1]],
        dtype=np.uint64,
    )
    for n in (1, 7, 100):
        a = np.concatenate([edge, random(n)])
        b = np.concatenate([edge[::-1], random(n)])
        want = _mul_np(a, b)
        for portable in (False, True):
            out = np.empty_like(a)
            mod.mul(a, b, out, portable)
            if not np.array_equal(out, want):
                raise ArithmeticError("_vole.mul disagrees with the fallback")
            for c in (b[0], b[-1], edge[3]):
                out = np.empty_like(a)
                mod.mul_const(a, np.ascontiguousarray(c), out, portable)
                if not np.array_equal(out, _mul_const_np(a, c)):
                    raise ArithmeticError("_vole.mul_const disagrees with the fallback")


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get("VEIL_NATIVE", "1").strip() == "0":
        return None, "disabled by VEIL_NATIVE=0"
    try:
        mod = importlib.import_module("veil.protocols.psi._vole")
    except ImportError:
        return None, "not built (no C compiler at install time): numpy fallback"
    try:
        _self_test(mod)
    except (ArithmeticError, ValueError, TypeError) as exc:
        return None, f"failed its self-test ({exc}): numpy fallback"
    how = "PCLMULQDQ" if mod.clmul_available() else "portable carry-less product"
    return mod, f"C helper, {how} (checked against the fallback)"


def native() -> ModuleType | None:
    """The checked C helper, or None when the numpy fallback runs (for lpn.py)."""
    if "native" not in _STATE:
        with _LOCK:
            if "native" not in _STATE:
                _STATE["native"] = _load()
    return _STATE["native"][0]


def native_status() -> str:
    """Which path :func:`mul` and :func:`mul_const` use, and why."""
    native()
    return _STATE["native"][1]


# -- public products ---------------------------------------------------------------------------


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise product of two (n, 2) vectors."""
    av, bv = _vector(a, "gf128.mul.a"), _vector(b, "gf128.mul.b")
    if av.shape != bv.shape:
        raise ConfigError("gf128.mul", f"shapes {av.shape} and {bv.shape} differ")
    mod = native()
    if mod is None:
        return _mul_np(av, bv)
    out = np.empty_like(av)
    mod.mul(av, bv, out)
    return out


def mul_const(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The (n, 2) vector a times the single element c (shape (2,))."""
    av, cv = _vector(a, "gf128.mul_const.a"), _element(c, "gf128.mul_const.c")
    mod = native()
    if mod is None:
        return _mul_const_np(av, cv)
    out = np.empty_like(av)
    mod.mul_const(av, cv, out)
    return out
