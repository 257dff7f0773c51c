"""Scheme selection and the HE cheat sheet. Algorithms take ``he: HEScheme`` ("paillier" | "ou").

    scheme = get_scheme(params.he)                  # veil.crypto.paillier or veil.crypto.ou
    pk, sk = scheme.generate_keypair(2048)          # < 2048 only with policy=TEST_POLICY
                                                    # (veil.policy: the one SecurityPolicy)
    pk.precompute(len(g))                           # optional offline randomiser pool
    c = pk.encrypt(g)                               # float64 -> 2**-40 fixed point; ints exact
    sk.decrypt(c)                                   # float64 (floats) / int64 (ints)
    c + c2, c + x, x + c, c - x, -c, c * 0.25, c * x, c / 4, c[idx], len(c), c.shape
    c.sum()                                         # length-1 EncryptedArray
    c.group_sum(groups, n_groups)                   # histogram; groups < 0 skipped
    c @ X  /  c.matmul(X, bits=48)                  # (n,) x (n, k) -> (k,): X^T d for LR
    spec = pk.pack_spec(slots=2, max_abs=1.0, max_terms=n_rows, frac_bits=16)
    p = pk.encrypt_packed(np.column_stack([g, h]), spec)   # one ciphertext per row
    hist = p.group_sum(bins, n_bins).compress()     # k bins per ciphertext
    sk.decrypt_packed(hist, slots=2, rows=n_bins)   # (n_bins, 2) float64
    wire = c.to_wire(); EncryptedArray.from_wire(pk, wire)      # codec-ready dicts
    public_key_from_wire(pk.to_wire())              # either scheme
    concatenate([c1, c2])
    with LocalBackend(workers=4) as b:              # where big batches run: a key's
        pk, sk = scheme.generate_keypair(2048, backend=b)   # arrays use its backend
        peer = public_key_from_wire(wire, backend=b)    # (None: default_backend())

Both schemes share :class:`~veil.crypto.encrypted.EncryptedArray`. Paillier has a
2047-bit plaintext space; OU (faster, ~681-bit plaintexts, not CCA-safe: read
:mod:`veil.crypto.ou` before using it) suits SecureBoost and binning.
"""

from __future__ import annotations

from enum import StrEnum
from types import ModuleType

from veil.crypto import ou, paillier
from veil.crypto._scheme import HEPublicKey, HESecretKey
from veil.crypto.backend import (
    HEBackend,
    LocalBackend,
    default_backend,
    set_default_backend,
    set_default_workers,
)
from veil.crypto.encoding import DEFAULT_FRAC_BITS, HEOverflowError, PackSpec
from veil.crypto.encrypted import EncryptedArray, concatenate
from veil.errors import ConfigError, ProtocolError
from veil.policy import DEFAULT_POLICY, TEST_POLICY, SecurityPolicy

__all__ = [
    "DEFAULT_FRAC_BITS",
    "DEFAULT_POLICY",
    "TEST_POLICY",
    "EncryptedArray",
    "HEBackend",
    "HEOverflowError",
    "HEPublicKey",
    "HEScheme",
    "HESecretKey",
    "KeyPolicy",
    "LocalBackend",
    "PackSpec",
    "SecurityPolicy",
    "concatenate",
    "default_backend",
    "generate_keypair",
    "get_scheme",
    "get_workers",
    "public_key_from_wire",
    "set_default_backend",
    "set_workers",
    "warm_up",
]

KeyPolicy = SecurityPolicy
"""Old name of :class:`veil.policy.SecurityPolicy` (kept while callers move over)."""


class HEScheme(StrEnum):
    PAILLIER = "paillier"
    OU = "ou"


_MODULES: dict[HEScheme, ModuleType] = {HEScheme.PAILLIER: paillier, HEScheme.OU: ou}


def get_scheme(name: str | HEScheme) -> ModuleType:
    """The scheme module (``paillier`` or ``ou``) for a job's ``he`` parameter."""
    try:
        return _MODULES[HEScheme(name)]
    except ValueError:
        raise ConfigError(
            "he", f"unknown scheme {name!r}", f"use one of {[s.value for s in HEScheme]}"
        ) from None


def generate_keypair(
    he: str | HEScheme = HEScheme.PAILLIER,
    bits: int = 2048,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
    backend: HEBackend | None = None,
) -> tuple[HEPublicKey, HESecretKey]:
    """Key pair of the named scheme; its batches run on ``backend`` (None: the default)."""
    pk, sk = get_scheme(he).generate_keypair(bits, policy=policy, backend=backend)
    return pk, sk


def public_key_from_wire(
    obj: object, policy: SecurityPolicy = DEFAULT_POLICY, *, backend: HEBackend | None = None
) -> HEPublicKey:
    """Rebuild a public key of either scheme from ``pk.to_wire()``."""
    if not isinstance(obj, dict) or "scheme" not in obj:
        raise ProtocolError("malformed public key: no scheme")
    try:
        mod = get_scheme(obj["scheme"])
    except ConfigError as e:
        raise ProtocolError(f"malformed public key: {e}") from e
    pk: HEPublicKey = mod.PublicKey.from_wire(obj, policy, backend=backend)
    return pk


def get_workers() -> int:
    """Cores the default backend uses (see :mod:`veil.crypto.backend`)."""
    return default_backend().workers


def set_workers(n: int) -> None:
    """Make the default backend a :class:`LocalBackend` of ``n`` cores (1 = single core,
    in-process). Keys made with an explicit backend are not affected."""
    set_default_workers(n)


def warm_up() -> None:
    """Start the default backend's worker processes ahead of the first big batch."""
    default_backend().warm_up()
