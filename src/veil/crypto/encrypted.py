"""``EncryptedArray``: numpy-like arrays of Paillier or OU ciphertexts, shared by both schemes.

Each array carries its public key, the ciphertexts (numpy object array of gmpy2 ``mpz``),
its fixed-point ``frac_bits``, whether it decodes to floats, and ``bound``: a proven upper
bound on ``|encoded plaintext|`` updated by every operation. An operation whose bound would
exceed the key's plaintext capacity raises :class:`HEOverflowError` *before* it silently
wraps. Packed arrays (see :mod:`veil.crypto.encoding`) carry their ``PackSpec`` and
per-slot ``terms`` instead and support ``+``, ``sum``, ``group_sum``, indexing and
``concatenate``.

Homomorphic identities (``N`` the plaintext modulus): ``E(a)*E(b) = E(a+b)``,
``E(a)**k = E(k*a)``, ``E(a)**-1 = E(-a)``, all mod the ciphertext modulus.

Note: ``c * 0`` is the ciphertext 1, which anyone can recognise as zero; call
``rerandomize()`` before sending such results to a party other than the key holder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, SupportsIndex, TypeAlias, cast

import numpy as np
import numpy.typing as npt

from veil.crypto import _vector as vec
from veil.crypto import encoding as enc
from veil.crypto.packing import compress
from veil.errors import ConfigError, ProtocolError

if TYPE_CHECKING:
    from veil.codec import WireValue
    from veil.crypto._scheme import HEPublicKey

Index: TypeAlias = (
    "SupportsIndex | slice | np.ndarray | Sequence[int]"
    " | tuple[SupportsIndex | slice | np.ndarray | Sequence[int] | None, ...]"
)
"""What ``c[idx]`` takes: numpy basic and integer/boolean array indexing."""


class EncryptedArray:
    """Element-wise homomorphic array; see the module docstring."""

    __slots__ = ("bound", "ct", "frac_bits", "is_float", "pack", "pk", "terms")
    __array_ufunc__ = None  # numpy defers to our reflected operators (x + c, x * c)

    def __init__(
        self,
        pk: HEPublicKey,
        ct: np.ndarray,
        frac_bits: int,
        is_float: bool,
        bound: int,
        *,
        pack: enc.PackSpec | None = None,
        terms: np.ndarray | None = None,
    ) -> None:
        self.pk = pk
        self.ct = ct
        self.frac_bits = frac_bits
        self.is_float = is_float
        self.bound = bound
        self.pack = pack
        self.terms = terms

    # -- shape -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.ct.shape)

    @property
    def ndim(self) -> int:
        return int(self.ct.ndim)

    @property
    def size(self) -> int:
        return int(self.ct.size)

    def __len__(self) -> int:
        return int(self.ct.shape[0]) if self.ct.ndim else 1

    def __repr__(self) -> str:
        kind = f"packed x{self.pack.slots}" if self.pack else ("float" if self.is_float else "int")
        return f"EncryptedArray({self.pk.scheme}, shape={self.shape}, {kind}, f={self.frac_bits})"

    def _like(self, ct: np.ndarray, frac_bits: int, is_float: bool, bound: int) -> EncryptedArray:
        self.pk.check_bound(bound, "result of a homomorphic operation")
        return EncryptedArray(self.pk, ct, frac_bits, is_float, bound)

    def __getitem__(self, idx: Index) -> EncryptedArray:
        if isinstance(idx, np.ndarray) and idx.dtype.kind not in "iub":
            raise ConfigError("idx", f"index dtype {idx.dtype} is not int/bool", "")
        ct = self.ct[idx]
        if not isinstance(ct, np.ndarray):
            ct = np.array([ct], dtype=object).reshape(())
        terms = None if self.terms is None else self.terms[idx]
        if terms is not None and terms.ndim == 1:
            terms = terms.reshape(1, -1)
            ct = ct.reshape(1)
        return EncryptedArray(
            self.pk, ct, self.frac_bits, self.is_float, self.bound, pack=self.pack, terms=terms
        )

    def reshape(self, *shape: SupportsIndex | Sequence[SupportsIndex]) -> EncryptedArray:
        """Same ciphertexts in a new shape: ``c.reshape(2, 3)`` or ``c.reshape((2, 3))``."""
        self._no_pack("reshape")
        dims = shape[0] if len(shape) == 1 else cast("tuple[SupportsIndex, ...]", shape)
        return EncryptedArray(
            self.pk, self.ct.reshape(dims), self.frac_bits, self.is_float, self.bound
        )

    def _no_pack(self, what: str) -> None:
        if self.pack is not None:
            raise ConfigError("c", f"{what} is not defined on packed arrays", "decrypt_packed")

    # -- arithmetic --------------------------------------------------------------------
    def _align(self, f: int) -> EncryptedArray:
        """Same values at ``f >= frac_bits`` frac bits (ciphertext ** 2**(f - frac_bits))."""
        if f == self.frac_bits:
            return self
        shift = f - self.frac_bits
        ct = vec.pow_scalar(self.pk.backend, self.ct, 1 << shift, self.pk.ct_modulus)
        return self._like(ct, f, self.is_float, self.bound << shift)

    def __add__(self, other: EncryptedArray | npt.ArrayLike) -> EncryptedArray:
        m = self.pk.ct_modulus
        if isinstance(other, EncryptedArray):
            if other.pk != self.pk:
                raise ConfigError("other", "is encrypted under another key", "use one key")
            if (self.pack is None) != (other.pack is None) or self.pack != other.pack:
                raise ConfigError("other", "packing layouts differ", "add like with like")
            if self.pack is not None:
                return self._add_packed(other)
            f = max(self.frac_bits, other.frac_bits)
            a, b = self._align(f), other._align(f)
            ct = vec.mulmod(self.pk.backend, a.ct, b.ct, m)
            return self._like(ct, f, a.is_float or b.is_float, a.bound + b.bound)
        self._no_pack("ciphertext + plaintext")
        x = enc.as_array(other, "other")
        f = self.frac_bits
        is_float = self.is_float or x.dtype.kind == "f"
        if x.dtype.kind == "f" and f < enc.DEFAULT_FRAC_BITS:
            return self._align(enc.DEFAULT_FRAC_BITS).__add__(other)
        ints = enc.scale_to_int(x, f)
        bound = self.bound + enc.max_abs_int(ints)
        self.pk.check_bound(bound, "ciphertext + plaintext")
        shape = np.broadcast_shapes(self.shape, ints.shape)
        plain = self.pk.raw_plain(np.broadcast_to(ints, shape).ravel()).reshape(shape)
        return self._like(vec.mulmod(self.pk.backend, self.ct, plain, m), f, is_float, bound)

    __radd__ = __add__

    def _add_packed(self, other: EncryptedArray) -> EncryptedArray:
        assert self.pack is not None and self.terms is not None and other.terms is not None
        terms = self.terms + other.terms
        _check_terms(terms, self.pack)
        ct = vec.mulmod(self.pk.backend, self.ct, other.ct, self.pk.ct_modulus)
        return EncryptedArray(self.pk, ct, 0, False, 0, pack=self.pack, terms=terms)

    def __neg__(self) -> EncryptedArray:
        self._no_pack("negation")
        ct = vec.invert(self.ct, self.pk.ct_modulus)
        return EncryptedArray(self.pk, ct, self.frac_bits, self.is_float, self.bound)

    def __sub__(self, other: EncryptedArray | npt.ArrayLike) -> EncryptedArray:
        if isinstance(other, EncryptedArray):
            return self + (-other)
        return self + (-enc.as_array(other, "other"))

    def __rsub__(self, other: EncryptedArray | npt.ArrayLike) -> EncryptedArray:
        return (-self).__add__(other)

    def __mul__(self, other: EncryptedArray | npt.ArrayLike) -> EncryptedArray:
        if isinstance(other, EncryptedArray):
            raise ConfigError(
                "other",
                "ciphertext * ciphertext is not additively homomorphic",
                "multiply by a plaintext",
            )
        self._no_pack("multiplication")
        k, fk = enc.encode_multiplier(other, field="other")
        is_float = self.is_float or np.asarray(other).dtype.kind == "f"
        bound = self.bound * enc.max_abs_int(k)
        self.pk.check_bound(bound, "ciphertext * plaintext")
        m = self.pk.ct_modulus
        if k.ndim == 0:
            ct = vec.pow_scalar(self.pk.backend, self.ct, int(k), m)
        else:
            shape = np.broadcast_shapes(self.shape, k.shape)
            ct = vec.pow_elementwise(
                np.broadcast_to(self.ct, shape).ravel(), np.broadcast_to(k, shape).ravel(), m
            ).reshape(shape)
        return self._like(ct, self.frac_bits + fk, is_float, bound)

    __rmul__ = __mul__

    def __truediv__(self, other: npt.ArrayLike) -> EncryptedArray:
        x = enc.as_array(other, "other").astype(np.float64)
        if np.any(x == 0):
            raise ConfigError("other", "division by zero", "")
        return self * (1.0 / x)

    # -- reductions --------------------------------------------------------------------
    def sum(self) -> EncryptedArray:
        """Encrypted sum of all elements, as a length-1 array."""
        if self.pack is not None:
            assert self.terms is not None
            terms = self.terms.sum(axis=0, keepdims=True)
            _check_terms(terms, self.pack)
            ct = vec.product(self.pk.backend, self.ct.ravel(), self.pk.ct_modulus).reshape(1)
            return EncryptedArray(self.pk, ct, 0, False, 0, pack=self.pack, terms=terms)
        ct = vec.product(self.pk.backend, self.ct.ravel(), self.pk.ct_modulus).reshape(1)
        return self._like(ct, self.frac_bits, self.is_float, self.bound * max(self.size, 1))

    def group_sum(self, groups: npt.ArrayLike, n_groups: int) -> EncryptedArray:
        """``out[g]`` = sum of ``self[i]`` with ``groups[i] == g``; ``groups < 0`` skipped,
        empty groups give an encryption of 0 (the ciphertext 1; rerandomize before sharing).

        ``groups`` of shape (n, F) computes F histograms in one call (e.g. the bins of
        every feature for SecureBoost), spread over the workers by feature; the result is
        1-D with ``out[f * n_groups + g]``.
        """
        g = np.asarray(groups)
        if self.ndim != 1:
            raise ConfigError("c", f"group_sum needs a 1-D array, got {self.shape}", "ravel")
        if g.ndim == 1:
            g = g.reshape(-1, 1)
        if g.ndim != 2 or g.shape[0] != len(self) or g.dtype.kind not in "iu":
            raise ConfigError(
                "groups", f"must be ({len(self)},) or ({len(self)}, F) ints, got {g.shape}", ""
            )
        if not isinstance(n_groups, int | np.integer) or n_groups < 0:
            raise ConfigError("n_groups", f"must be an int >= 0, got {n_groups!r}", "")
        if g.size and g.max() >= n_groups:
            raise ConfigError("groups", f"has {g.max()} >= n_groups={n_groups}", "")
        g = g.astype(np.int64)
        ct = vec.group_product_columns(
            self.pk.backend, self.ct, g, int(n_groups), self.pk.ct_modulus
        )
        if self.pack is not None:
            assert self.terms is not None
            parts = []
            for f in range(g.shape[1]):
                terms = np.zeros((int(n_groups), self.pack.slots), dtype=np.int64)
                keep = g[:, f] >= 0
                np.add.at(terms, g[keep, f], self.terms[keep])
                parts.append(terms)
            terms = np.concatenate(parts) if parts else np.zeros((0, self.pack.slots), np.int64)
            _check_terms(terms, self.pack)
            return EncryptedArray(self.pk, ct, 0, False, 0, pack=self.pack, terms=terms)
        most = max((int(np.bincount(col[col >= 0]).max(initial=0)) for col in g.T), default=0)
        return self._like(ct, self.frac_bits, self.is_float, self.bound * most)

    def matmul(self, X: npt.ArrayLike, bits: int = 48) -> EncryptedArray:
        """``self @ X`` for ``self`` of shape (n,) and plaintext ``X`` (n, k) -> (k,).

        Float ``X`` keeps ``bits`` significant bits of its largest entry (exact when it
        can be, e.g. integer-valued or dyadic data); cost grows with ``bits``.
        """
        self._no_pack("matmul")
        if self.ndim != 1:
            raise ConfigError("c", f"matmul needs a 1-D array, got {self.shape}", "")
        Xa = enc.as_array(X, "X")
        if Xa.ndim == 1:
            Xa = Xa.reshape(-1, 1)
            squeeze = True
        else:
            squeeze = False
        if Xa.ndim != 2 or Xa.shape[0] != len(self):
            raise ConfigError("X", f"shape {Xa.shape} does not match ({len(self)}, k)", "")
        k, fk = enc.encode_multiplier(Xa, bits=bits, field="X")
        top = enc.max_abs_int(k)
        if top < (1 << 62) // max(1, k.shape[0]):  # int64 all the way (no overflow in sums)
            k = k.astype(np.int64)
            col_l1 = [int(v) for v in np.abs(k).sum(axis=0)]
        else:
            col_l1 = [sum(abs(int(v)) for v in k[:, j]) for j in range(k.shape[1])]
        bound = self.bound * max(col_l1, default=0)
        self.pk.check_bound(bound, "c @ X")
        ct = vec.multi_exp(self.pk.backend, self.ct, k, self.pk.ct_modulus)
        is_float = self.is_float or Xa.dtype.kind == "f"
        out = self._like(ct, self.frac_bits + fk, is_float, bound)
        return out[0:1] if squeeze else out

    def __matmul__(self, X: npt.ArrayLike) -> EncryptedArray:
        return self.matmul(X)

    def __rmatmul__(self, X: npt.ArrayLike) -> EncryptedArray:
        """``X @ c`` for plaintext ``X`` of shape (k, n): the same as ``c @ X.T``."""
        Xa = enc.as_array(X, "X")
        return self.matmul(Xa.T if Xa.ndim == 2 else Xa)

    def compress(self) -> EncryptedArray:
        """Fold packed rows into as few ciphertexts as fit (see :mod:`veil.crypto.packing`)."""
        parts = compress(self)
        if parts is None:
            return self
        ct, spec, terms = parts
        return EncryptedArray(self.pk, ct, 0, False, 0, pack=spec, terms=terms)

    def rerandomize(self) -> EncryptedArray:
        """Same plaintexts under fresh randomness (hides that a value came from ``* 0``)."""
        r = self.pk.raw_random_zero(self.size).reshape(self.shape)
        ct = vec.mulmod(self.pk.backend, self.ct, r, self.pk.ct_modulus)
        return EncryptedArray(
            self.pk, ct, self.frac_bits, self.is_float, self.bound, pack=self.pack, terms=self.terms
        )

    # -- wire --------------------------------------------------------------------------
    def to_wire(self) -> dict[str, WireValue]:
        """Codec-compatible dict: fixed-width ciphertexts plus the encoding metadata."""
        from veil.codec import IntArray

        out: dict[str, WireValue] = {
            "scheme": self.pk.scheme,
            "shape": list(self.shape),
            "frac_bits": self.frac_bits,
            "float": self.is_float,
            "bound": self.bound,
            "ct": IntArray(self.ct.ravel().tolist(), self.pk.ct_bytes),
        }
        if self.pack is not None and self.terms is not None:
            pack: dict[str, WireValue] = {**self.pack.to_wire()}
            out["pack"] = pack
            out["terms"] = self.terms.astype(np.int64)
        return out

    @classmethod
    def from_wire(cls, pk: HEPublicKey, obj: object) -> EncryptedArray:
        """Rebuild an array sent by :meth:`to_wire`; raises ProtocolError if malformed."""
        from veil.codec import IntArray

        if not isinstance(obj, dict):
            raise ProtocolError(f"malformed encrypted array: {type(obj).__name__}, not a dict")
        try:
            if obj["scheme"] != pk.scheme:
                raise ProtocolError(f"ciphertexts are {obj['scheme']!r}, key is {pk.scheme!r}")
            shape = tuple(int(d) for d in obj["shape"])
            ints = obj["ct"]
            if not isinstance(ints, IntArray) or len(ints) != int(np.prod(shape, dtype=np.int64)):
                raise ProtocolError("ciphertext count does not match the shape")
            ct = vec.from_ints(ints.values, pk.ct_modulus).reshape(shape)
            frac_bits, bound = int(obj["frac_bits"]), int(obj["bound"])
            is_float = bool(obj["float"])
            if not 0 <= frac_bits <= 4096 or not 0 <= bound <= pk.plain_bound:
                raise ProtocolError("frac_bits or bound out of range")
            if "pack" in obj:
                spec = enc.PackSpec.from_wire(obj["pack"])
                terms = np.asarray(obj["terms"], dtype=np.int64)
                if terms.shape != (len(ct), spec.slots) or (terms < 0).any():
                    raise ProtocolError("packed terms do not match the ciphertexts")
                _check_terms(terms, spec)
                return cls(pk, ct, 0, False, 0, pack=spec, terms=terms)
            return cls(pk, ct, frac_bits, is_float, bound)
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise ProtocolError(f"malformed encrypted array: {e}") from e


def _check_terms(terms: np.ndarray, spec: enc.PackSpec) -> None:
    if terms.size and int(terms.max()) > spec.max_terms:
        raise enc.HEOverflowError(
            "packed sum",
            int(terms.max()) * 2 * spec.offset,
            1 << spec.slot_bits,
            f"at most max_terms={spec.max_terms} packed values may be summed per slot; "
            "build the spec with a larger max_terms",
        )


def concatenate(arrays: Sequence[EncryptedArray]) -> EncryptedArray:
    """Join 1-D (or packed) encrypted arrays end to end; all under one key and layout."""
    if not arrays:
        raise ConfigError("arrays", "is empty", "pass at least one EncryptedArray")
    first = arrays[0]
    for i, a in enumerate(arrays):
        if not isinstance(a, EncryptedArray) or a.pk != first.pk:
            raise ConfigError(f"arrays[{i}]", "is not an EncryptedArray under the same key", "")
        if a.pack != first.pack:
            raise ConfigError(f"arrays[{i}]", "has a different packing layout", "")
    if first.pack is not None:
        terms = np.concatenate([a.terms for a in arrays if a.terms is not None])
        ct = np.concatenate([a.ct.ravel() for a in arrays])
        return EncryptedArray(first.pk, ct, 0, False, 0, pack=first.pack, terms=terms)
    f = max(a.frac_bits for a in arrays)
    aligned = [a._align(f) for a in arrays]
    ct = np.concatenate([a.ct.reshape(-1) if a.ndim == 0 else a.ct for a in aligned])
    return EncryptedArray(
        first.pk,
        ct,
        f,
        any(a.is_float for a in arrays),
        max(a.bound for a in aligned),
    )
