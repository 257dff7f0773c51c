"""Fixed-point encoding of numbers into HE plaintexts, and packing of several per ciphertext.

Encoding (all schemes): a float ``x`` becomes the integer ``round(x * 2**f)``; ``f`` (the
*frac bits*) travels with the ciphertext array. Encrypted floats use ``f = 40`` by default,
so each encrypted value carries an absolute error of at most ``2**-41`` (about 4.5e-13).
Integers are encoded exactly with ``f = 0``. Negative values wrap modulo the plaintext
modulus (the decryptor maps the upper half back to negatives), so the signed range is
``|value * 2**f| < N/2`` with ``N`` the plaintext modulus (``n`` for Paillier, ``p`` for OU).

Plaintext *multipliers* (``c * x``, ``c @ X``) are encoded with the smallest ``f`` that
represents them exactly, capped so that the largest keeps ``bits`` significant bits (53 for
scalars, i.e. no loss against float64; see :func:`encode_multiplier`). Multiplying adds the
frac bits; adding aligns the smaller ``f`` up to the larger one (exact).

Packing (:class:`PackSpec`): ``slots`` bounded values share one plaintext. Each value ``v``
with ``|v| <= max_abs`` is stored as ``round(v * 2**f) + offset`` (``offset`` = encoded
``max_abs``) in a ``slot_bits``-wide field; ``slot_bits`` leaves room for ``max_terms``
encryptions to be added together without a carry into the next slot. The decryptor
subtracts ``terms * offset`` per slot, where ``terms`` (how many packed encryptions were
summed into that slot) is tracked alongside the ciphertexts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError, VeilError

DEFAULT_FRAC_BITS = 40
"""Frac bits of encrypted floats: absolute precision 2**-41 per encrypted value."""

SCALAR_BITS = 53
"""Significant bits kept of a float multiplier (53 = exact float64)."""

MAX_MULTIPLIER_FRAC_BITS = 256
"""Multipliers are rounded to multiples of 2**-256 (smaller magnitudes become 0)."""

_INT64_SAFE = 1 << 62


class HEOverflowError(VeilError, OverflowError):
    """A value, or the result of an operation, does not fit the plaintext space."""

    def __init__(self, what: str, bound: int, capacity: int, fix: str) -> None:
        self.what = what
        self.bound = bound
        self.capacity = capacity
        super().__init__(
            f"{what}: magnitude up to 2**{bound.bit_length()} does not fit the plaintext "
            f"capacity 2**{capacity.bit_length() - 1} -- {fix}"
        )


def as_array(x: npt.ArrayLike, field: str) -> np.ndarray:
    """Return ``x`` as a numeric numpy array (ints, floats, or object array of ints)."""
    a = np.asarray(x)
    if a.dtype.kind == "b":
        a = a.astype(np.int64)
    if a.dtype.kind == "O":
        flat = a.ravel()
        if not all(isinstance(v, int | np.integer) or _is_mpz(v) for v in flat):
            raise ConfigError(field, "object array holds non-integers", "pass floats or ints")
        return a
    if a.dtype.kind not in "iuf":
        raise ConfigError(field, f"dtype {a.dtype} is not numeric", "pass a float or int array")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ConfigError(field, "contains NaN or infinity", "clean the data before encrypting")
    return a


def _is_mpz(v: object) -> bool:
    return type(v).__name__ == "mpz"


def is_float_array(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def scale_to_int(a: np.ndarray, frac_bits: int) -> np.ndarray:
    """``round(a * 2**frac_bits)`` as an object array of Python ints (exact), same shape."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        scaled = np.asarray(np.rint(np.ldexp(a.astype(np.float64), frac_bits)))
        if not np.all(np.isfinite(scaled)):
            raise HEOverflowError(
                "value * 2**frac_bits", 1 << 1100, 1 << 1024, "use fewer frac bits"
            )
        if scaled.size == 0 or np.max(np.abs(scaled)) < _INT64_SAFE:
            flat = [int(v) for v in scaled.astype(np.int64).ravel()]
        else:
            flat = [int(v) for v in scaled.ravel()]
    else:
        flat = [int(v) << frac_bits for v in a.ravel()]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(a.shape)


def max_abs_int(a: np.ndarray) -> int:
    """Largest ``|v|`` of an integer-valued array, as a Python int (0 when empty)."""
    if a.size == 0:
        return 0
    return int(max(abs(int(v)) for v in (a.max(), a.min())))


def encode_multiplier(
    x: npt.ArrayLike, bits: int = SCALAR_BITS, field: str = "x"
) -> tuple[np.ndarray, int]:
    """Encode a plaintext multiplier exactly where possible; return ``(ints, frac_bits)``.

    Integers give ``f = 0``. Floats get the smallest ``f`` making every ``x * 2**f`` an
    integer (0.25 -> f = 2), capped so the largest magnitude keeps ``bits`` significant
    bits (relative error <= 2**-bits of the largest entry) and at 256 frac bits.
    """
    a = as_array(x, field)
    if a.dtype.kind != "f":
        return a.astype(object) if a.dtype.kind != "O" else a, 0
    a64 = a.astype(np.float64)
    nz = a64[a64 != 0]
    if nz.size == 0:
        return np.zeros(a.shape, dtype=object), 0
    mant, exp = np.frexp(nz)  # nz = mant * 2**exp, 0.5 <= |mant| < 1
    m_int = np.abs(np.ldexp(mant, 53)).astype(np.int64)
    tz = _trailing_zeros(m_int)
    needed = int(np.max(53 - exp - tz))
    cap = bits - int(np.max(exp))
    f = max(0, min(needed, cap, MAX_MULTIPLIER_FRAC_BITS))
    return scale_to_int(a64, f), f


def _trailing_zeros(v: np.ndarray) -> np.ndarray:
    low = v & -v
    return np.asarray(np.log2(low.astype(np.float64)), dtype=np.int64)


def decode(ints: Sequence[int] | np.ndarray, frac_bits: int, as_float: bool) -> np.ndarray:
    """Turn signed plaintext integers back into float64 (``as_float``) or int64/object."""
    vals = [int(v) for v in ints]
    if as_float:
        if frac_bits == 0:
            return np.array([float(v) for v in vals], dtype=np.float64)
        return np.array([v / (1 << frac_bits) for v in vals], dtype=np.float64)
    if frac_bits:
        vals = [v >> frac_bits for v in vals]
    if all(-_INT64_SAFE <= v < _INT64_SAFE for v in vals):
        return np.array(vals, dtype=np.int64)
    return np.array(vals, dtype=object)


@dataclass(frozen=True)
class PackSpec:
    """Layout of packed plaintexts; build one with :func:`make_pack_spec`."""

    slots: int
    slot_bits: int
    frac_bits: int
    offset: int
    max_terms: int

    def to_wire(self) -> dict[str, int]:
        return {
            "slots": self.slots,
            "slot_bits": self.slot_bits,
            "frac_bits": self.frac_bits,
            "offset": self.offset,
            "max_terms": self.max_terms,
        }

    @classmethod
    def from_wire(cls, obj: object) -> PackSpec:
        if not isinstance(obj, dict):
            raise ConfigError("pack", "malformed pack spec (not a dict)", "send PackSpec.to_wire()")
        try:
            spec = cls(**{k: int(obj[k]) for k in cls.__dataclass_fields__})
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                "pack", f"malformed pack spec ({e})", "send PackSpec.to_wire()"
            ) from e
        if min(spec.slots, spec.slot_bits, spec.max_terms) < 1 or spec.offset < 0:
            raise ConfigError("pack", "non-positive field", "send PackSpec.to_wire()")
        return spec


def pack_slots(values: Sequence[int], slot: int) -> int:
    """``sum v_j << (j * slot)`` for signed ``v_j``: several values in one plaintext, which
    homomorphic sums keep slot by slot while each stays below ``2**(slot-1)``."""
    return sum(int(v) << (j * slot) for j, v in enumerate(values))


def split_slots(t: int, slot: int, k: int) -> list[int]:
    """Inverse of :func:`pack_slots` for ``k`` signed values."""
    half, mask = 1 << (slot - 1), (1 << slot) - 1
    out = []
    for _ in range(k):
        v = ((t + half) & mask) - half
        out.append(v)
        t = (t - v) >> slot
    return out


def pack_capacity(plain_bits: int, max_abs: float, max_terms: int, frac_bits: int) -> int:
    """How many values fit one plaintext of ``plain_bits`` usable bits."""
    _, slot_bits = _slot_layout(max_abs, max_terms, frac_bits)
    return plain_bits // slot_bits


def _slot_layout(max_abs: float, max_terms: int, frac_bits: int) -> tuple[int, int]:
    if not (np.isfinite(max_abs) and max_abs >= 0):
        raise ConfigError("max_abs", f"must be a finite number >= 0, got {max_abs}", "")
    if int(max_terms) < 1:
        raise ConfigError("max_terms", f"must be >= 1, got {max_terms}", "pass the row count")
    if not 0 <= int(frac_bits) <= 256:
        raise ConfigError("frac_bits", f"must be in 0..256, got {frac_bits}", "")
    offset = int(np.ceil(np.ldexp(float(max_abs), int(frac_bits))))
    slot_bits = (2 * offset * int(max_terms)).bit_length() + 1
    return offset, slot_bits


def make_pack_spec(
    plain_bits: int, slots: int, max_abs: float, max_terms: int, frac_bits: int
) -> PackSpec:
    """Layout for ``slots`` values ``|v| <= max_abs``, summable ``max_terms`` times."""
    offset, slot_bits = _slot_layout(max_abs, max_terms, frac_bits)
    cap = plain_bits // slot_bits
    if not 1 <= slots <= cap:
        raise ConfigError(
            "slots",
            f"{slots} slots of {slot_bits} bits do not fit {plain_bits} plaintext bits "
            f"(capacity {cap})",
            "use fewer slots, fewer frac_bits, a smaller max_terms or a larger key",
        )
    return PackSpec(slots, slot_bits, int(frac_bits), offset, int(max_terms))


def pack_rows(values: np.ndarray, spec: PackSpec) -> list[int]:
    """Encode rows of ``spec.slots`` values into one non-negative integer each."""
    a = as_array(values, "values")
    if a.ndim != 2 or a.shape[1] != spec.slots:
        raise ConfigError(
            "values", f"shape {a.shape} is not (rows, {spec.slots})", "reshape to the spec"
        )
    ints = scale_to_int(a, spec.frac_bits)
    if max_abs_int(ints) > spec.offset:
        raise HEOverflowError(
            "packed value",
            max_abs_int(ints),
            spec.offset + 1,
            "raise max_abs in the pack spec or clip the values",
        )
    shifted = ints + spec.offset
    out = []
    sb = spec.slot_bits
    for row in shifted:
        acc = 0
        for j in range(spec.slots - 1, -1, -1):
            acc = (acc << sb) | int(row[j])
        out.append(acc)
    return out


def unpack_rows(ints: list[int], terms: np.ndarray, spec: PackSpec) -> np.ndarray:
    """Inverse of :func:`pack_rows` after ``terms[i, j]`` packed values were added."""
    sb = spec.slot_bits
    mask = (1 << sb) - 1
    rows = np.empty((len(ints), spec.slots), dtype=object)
    for i, packed in enumerate(ints):
        v = int(packed)
        for j in range(spec.slots):
            rows[i, j] = (v & mask) - int(terms[i, j]) * spec.offset
            v >>= sb
    if spec.frac_bits == 0:
        return rows.astype(np.int64)
    return np.array([x / (1 << spec.frac_bits) for x in rows.ravel()], dtype=np.float64).reshape(
        rows.shape
    )
