"""The few homomorphic operations vertical LR needs, behind one small seam.

The protocol calls only these functions, so the scheme (Paillier or OU from
:mod:`veil.crypto`) is a parameter and a later secret-sharing mode can replace
the whole module. Masks come from :mod:`secrets` (the OS generator).
"""

from __future__ import annotations

import importlib
import secrets
from typing import Any

import numpy as np

from veil.errors import ConfigError
from veil.ml.lr_options import HEScheme

# Masks are uniform integers in [-2^MASK_BITS, 2^MASK_BITS], exact in float64. A masked
# gradient sum below 2^16 in magnitude is then within statistical distance 2^-24 of the
# mask alone, and float64 keeps it to 2^-12 absolute (2^-24 on a 4096-row batch mean).
MASK_BITS = 40

# Tests may register a stand-in engine for a scheme name (explicitly, never by default).
_ENGINES: dict[str, Any] = {}


def register_engine(he: HEScheme | str, module: Any) -> None:
    """Use ``module`` (same API as ``veil.crypto.paillier``) for scheme ``he`` (tests only)."""
    _ENGINES[str(he)] = module


def engine(he: HEScheme) -> Any:
    """The module implementing scheme ``he``."""
    key = str(he)
    if key in _ENGINES:
        return _ENGINES[key]
    try:
        return importlib.import_module(f"veil.crypto.{key}")
    except ImportError as e:
        raise ConfigError(
            "hetero_lr.he", f"the '{key}' engine is not available ({e})", "install veil.crypto"
        ) from e


def keygen(he: HEScheme, bits: int) -> tuple[Any, Any]:
    """A fresh key pair of ``bits`` bits for this party."""
    return engine(he).generate_keypair(bits)  # type: ignore[no-any-return]


def pk_to_wire(pk: Any) -> Any:
    return pk.to_wire()


def pk_from_wire(he: HEScheme, obj: Any) -> Any:
    return engine(he).PublicKey.from_wire(obj)


def ct_to_wire(c: Any) -> Any:
    return c.to_wire()


def ct_from_wire(he: HEScheme, pk: Any, obj: Any) -> Any:
    return engine(he).EncryptedArray.from_wire(pk, obj)


def encrypt(pk: Any, x: np.ndarray) -> Any:
    return pk.encrypt(np.asarray(x, dtype=np.float64))


def decrypt(sk: Any, c: Any) -> np.ndarray:
    return np.asarray(sk.decrypt(c), dtype=np.float64)


def random_mask(k: int) -> np.ndarray:
    """``k`` masks from the OS generator, exact in float64."""
    span = 1 << MASK_BITS
    ints = [secrets.randbelow(2 * span + 1) - span for _ in range(k)]
    return np.asarray(ints, dtype=np.float64)
