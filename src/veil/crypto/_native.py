"""The optional C kernel (``_gmpkernel``) for batched modular products, checked before use.

``veil.crypto._gmpkernel`` runs the HE engine's inner loops -- fixed-base chains (the
randomisers and ``g**m`` of every encryption), group products (histograms, Pippenger
buckets), element-wise products (ct + ct) and the key owner's CRT join -- with GMP's own
public functions, from the libgmp that gmpy2 loaded, and without the GIL: the same
results as the Python loops in :mod:`veil.crypto._kernels` and
:class:`veil.crypto._fixedbase.FixedBase`, at about 0.65x their cost for 2048-bit moduli.
It is built by ``pip install`` when a C compiler is there; without it, or with
``VEIL_NATIVE=0``, the pure-Python loops run and give the same results.

:func:`kernel` loads it once per process and trusts it only after it has reproduced
gmpy2's results on random inputs; :func:`status` says which path is in use and why.
"""

from __future__ import annotations

import ctypes.util
import glob
import importlib
import os
import re
import secrets
import threading
from types import ModuleType
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpz

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}
_LIB = re.compile(r"^libgmp[-.]")


def _libgmp_path() -> str | None:
    """The libgmp gmpy2 runs on: the one mapped into this process (Linux), else gmpy2's
    bundled copy, else the system's."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                path = line.rsplit(" ", 1)[-1].strip()
                if path.startswith("/") and _LIB.match(os.path.basename(path)):
                    return path
    except OSError:
        pass
    site = os.path.dirname(os.path.dirname(gmpy2.__file__))
    for pattern in ("gmpy2.libs/libgmp*", "gmpy2/.dylibs/libgmp*"):
        found = sorted(glob.glob(os.path.join(site, pattern)))
        if found:
            return found[0]
    return ctypes.util.find_library("gmp")


def _self_test(mod: ModuleType) -> None:
    """Compare the kernel with gmpy2 on random inputs (raises on any difference: a kernel
    that disagrees is never used). Moduli of one limb, of a short top limb, and the
    2048/4096-bit sizes the schemes use."""
    for bits in (61, 2048, 2113, 4096):
        m = mpz(secrets.randbits(bits) | 1 | (1 << (bits - 1)))
        steps = [mpz(secrets.randbits(bits + 9)) for _ in range(3)]  # some above m
        size = 5
        rows = [mod.mont_row(m, s, size) for s in steps]
        digits = np.array([[0, 1, 4], [3, 0, 2], [4, 4, 4], [0, 0, 0]], dtype=np.int64)
        want = [
            gmpy2.powmod(steps[0], int(a), m)
            * gmpy2.powmod(steps[1], int(b), m)
            * gmpy2.powmod(steps[2], int(c), m)
            % m
            for a, b, c in digits.tolist()
        ]
        if mod.mont_chain(m, rows, digits) != want:
            raise ArithmeticError("mont_chain disagrees with gmpy2")
        start = [mpz(secrets.randbits(bits + 3)) for _ in range(len(want))]
        with_start = [s * w % m for s, w in zip(start, want, strict=True)]
        if mod.mont_chain(m, rows, digits, start) != with_start:
            raise ArithmeticError("mont_chain (with start values) disagrees with gmpy2")
        m2 = mpz(secrets.randbits(bits) | 1)
        while gmpy2.gcd(m, m2) != 1:
            m2 += 2
        x = [mpz(secrets.randbits(2 * bits)) % (m * m2) for _ in range(4)]
        joined = mod.crt_join([v % m for v in x], [v % m2 for v in x], m, m2, gmpy2.invert(m2, m))
        if joined != x:
            raise ArithmeticError("crt_join disagrees with gmpy2")
        a = [mpz(secrets.randbits(bits + 8)) for _ in range(9)]  # some unreduced
        b = [mpz(secrets.randbits(bits)) for _ in range(9)]
        if mod.mulmod(a, b, m) != [x * y % m for x, y in zip(a, b, strict=True)]:
            raise ArithmeticError("mulmod disagrees with gmpy2")
        groups = np.array([0, 2, -1, 0, 2, 2, 0, -1, 0], dtype=np.int64)
        want = [mpz(1)] * 4  # group 1 and 3 empty, group 2 of three, group 0 of four
        for v, g in zip(a, groups.tolist(), strict=True):
            if g >= 0:
                want[g] = want[g] * v % m
        if mod.group_product(a, groups, 4, m) != want:
            raise ArithmeticError("group_product disagrees with gmpy2")


def kernel() -> ModuleType | None:
    """The checked C kernel, or None (not built, disabled, or failed its check)."""
    if "kernel" not in _STATE:
        with _LOCK:
            if "kernel" not in _STATE:
                _STATE["kernel"], _STATE["status"] = _load()
    mod: ModuleType | None = _STATE["kernel"]
    return mod


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get("VEIL_NATIVE", "1").strip() == "0":
        return None, "disabled by VEIL_NATIVE=0"
    try:
        _gmpkernel = importlib.import_module("veil.crypto._gmpkernel")
    except ImportError:
        return None, "not built (no C compiler at install time): pure-Python kernels"
    path = _libgmp_path()
    if path is None:
        return None, "libgmp not found: pure-Python kernels"
    try:
        _gmpkernel.load(path)
        _self_test(_gmpkernel)
    except (
        OSError,
        ImportError,
        AttributeError,
        ArithmeticError,
        TypeError,
        ValueError,
        IndexError,
    ) as e:
        return None, f"C kernel rejected ({e}): pure-Python kernels"
    return _gmpkernel, f"C kernel on {os.path.basename(path)}"


def status() -> str:
    """Which kernel path this process uses, in words (for logs and benchmarks)."""
    kernel()
    return str(_STATE["status"])


def reset() -> None:
    """Forget the loaded state (tests switch ``VEIL_NATIVE`` and reload)."""
    with _LOCK:
        _STATE.clear()
