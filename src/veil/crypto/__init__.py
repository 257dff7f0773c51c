"""Pure cryptographic primitives (no I/O): HE schemes, curves, randomness.

Homomorphic encryption: ``from veil.crypto import paillier, ou`` (same shape) or
``veil.crypto.he.get_scheme(name)``; arrays are :class:`EncryptedArray`; big batches run
on an explicit :class:`HEBackend` (:mod:`veil.crypto.backend`). Elliptic curves for PSI:
:mod:`veil.crypto.ecc`. The serial kernels: :mod:`veil.crypto.kernels`. Key sizes are
checked against :class:`veil.policy.SecurityPolicy`.

This layer imports nothing above :mod:`veil.errors`, :mod:`veil.codec` and
:mod:`veil.policy`. Importing it has no side effects: the names below are loaded on
first access (PEP 562), so ``import veil.crypto`` loads neither gmpy2 nor the C kernel
(which is loaded, and checked against gmpy2, on the first batch that can use it), starts
no thread or process and registers no exit hook.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = [
    "DEFAULT_FRAC_BITS",
    "EncryptedArray",
    "HEBackend",
    "HEOverflowError",
    "HEPublicKey",
    "HEScheme",
    "HESecretKey",
    "LocalBackend",
    "PackSpec",
    "backend",
    "concatenate",
    "default_backend",
    "ecc",
    "encoding",
    "encrypted",
    "generate_keypair",
    "get_scheme",
    "he",
    "kernels",
    "ou",
    "packing",
    "paillier",
    "public_key_from_wire",
    "set_default_backend",
]

_SUBMODULES = frozenset(
    {"backend", "ecc", "encoding", "encrypted", "he", "kernels", "ou", "packing", "paillier"}
)
_FROM = {
    "DEFAULT_FRAC_BITS": "encoding",
    "EncryptedArray": "encrypted",
    "HEBackend": "backend",
    "HEOverflowError": "encoding",
    "HEPublicKey": "he",
    "HEScheme": "he",
    "HESecretKey": "he",
    "LocalBackend": "backend",
    "PackSpec": "encoding",
    "concatenate": "encrypted",
    "default_backend": "backend",
    "generate_keypair": "he",
    "get_scheme": "he",
    "public_key_from_wire": "he",
    "set_default_backend": "backend",
}

if TYPE_CHECKING:
    from veil.crypto import backend, ecc, encoding, encrypted, he, kernels, ou, packing, paillier
    from veil.crypto.backend import HEBackend, LocalBackend, default_backend, set_default_backend
    from veil.crypto.encoding import DEFAULT_FRAC_BITS, HEOverflowError, PackSpec
    from veil.crypto.encrypted import EncryptedArray, concatenate
    from veil.crypto.he import (
        HEPublicKey,
        HEScheme,
        HESecretKey,
        generate_keypair,
        get_scheme,
        public_key_from_wire,
    )


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FROM:
        value = getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
