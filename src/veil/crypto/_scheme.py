"""The small interface each additively homomorphic scheme implements, and the shared keys.

A scheme supplies a public key with ``raw_encrypt`` (randomised), ``raw_plain`` (the
deterministic encoding ``g**m`` used for ciphertext + plaintext), the ciphertext modulus
(ciphertext product = plaintext sum) and its plaintext capacity; and a secret key with
``raw_decrypt``. Everything else (fixed point, packing, vectors, group sums, matrix
products, serialisation of arrays) is shared in :mod:`veil.crypto.encrypted`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from veil.crypto import encoding as enc
from veil.crypto._kernels import objects
from veil.crypto.backend import HEBackend, default_backend
from veil.errors import ConfigError
from veil.policy import SecurityPolicy

if TYPE_CHECKING:
    from veil.codec import WireValue
    from veil.crypto._owner import CRTTables
    from veil.crypto.encrypted import EncryptedArray


POOL_CHUNK = 4096  # randomisers made per step when filling the pool


def security_bits(modulus_bits: int) -> int:
    """Security level of a factoring-based modulus (NIST SP 800-57 Part 1, table 2):
    2048 bits -> 112, 3072 -> 128, 7680 -> 192, 15360 -> 256; smaller test keys -> 80."""
    for bits, level in ((15360, 256), (7680, 192), (3072, 128), (2048, 112)):
        if modulus_bits >= bits:
            return level
    return 80


def check_policy(policy: object) -> SecurityPolicy:
    """``policy`` if it is a :class:`SecurityPolicy`, else :class:`ConfigError`."""
    if not isinstance(policy, SecurityPolicy):
        raise ConfigError(
            "policy",
            f"{type(policy).__name__} is not a SecurityPolicy",
            "pass veil.policy.DEFAULT_POLICY",
        )
    return policy


def check_backend(backend: object) -> HEBackend | None:
    """``backend`` if it is None or an :class:`HEBackend`, else :class:`ConfigError`."""
    if backend is not None and not isinstance(backend, HEBackend):
        raise ConfigError(
            "backend", f"{type(backend).__name__} is not an HEBackend", "pass a LocalBackend"
        )
    return backend


class HEPublicKey(ABC):
    """Public key of an additively homomorphic scheme (Paillier or OU)."""

    scheme: str
    bits: int  # modulus size
    ct_modulus: mpz
    plain_bound: int  # largest |signed encoded plaintext|
    plain_bits: int  # every integer below 2**plain_bits is a valid unsigned plaintext
    ct_bytes: int

    def raw_encrypt(self, ms: np.ndarray) -> np.ndarray:
        """Randomised encryptions of signed ints ``ms`` (object array) -> object array.

        The randomisers (worker processes) and ``g**m`` (this process) are computed at
        the same time."""
        be = self.backend
        if len(ms) < 256 or be.workers == 1 or self._threaded():
            return self.raw_plain_times(ms, self.raw_random_zero(len(ms)))
        rand = be.concurrently(self.raw_random_zero, len(ms))
        gm = self.raw_plain(ms)
        return self._times(gm, rand.result())

    def _crt(self) -> CRTTables | None:
        """The key owner's CRT tables, where this object has them and the C kernel runs."""
        owner = self._owner
        return owner if owner is not None and owner.usable() else None

    def _owner_randomisers(self, name: str, count: int) -> np.ndarray | None:
        """Randomisers ``base**r`` through the key owner's CRT tables, or None where this
        key object has none (see :mod:`veil.crypto._owner`)."""
        owner = self._crt()
        if owner is None:
            return None
        digits = owner.table(name).random_digits(count)
        return self.backend.map_ranges(lambda a, b: owner.chain([(name, digits[a:b])]), count)

    def _threaded(self) -> bool:
        """Whether encryption's table chains run on threads (then each stage is already
        spread over the cores, and randomisers and ``g**m`` need not overlap)."""
        return False

    def _times(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return objects(self.backend.mulmod_list(a.tolist(), b.tolist(), self.ct_modulus))

    @abstractmethod
    def raw_plain(self, ms: np.ndarray) -> np.ndarray:
        """Deterministic ``g**m`` for signed ints ``ms``: multiply into a ciphertext to add."""

    def raw_plain_times(self, ms: np.ndarray, cts: np.ndarray) -> np.ndarray:
        """``cts[i] * g**ms[i]``: adds plaintexts to ciphertexts (a scheme whose ``g**m`` is
        a table chain overrides this to start the chain from ``cts``)."""
        return self._times(self.raw_plain(ms), cts)

    @property
    def backend(self) -> HEBackend:
        """Where this key's batches run: the backend it was made with, else
        :func:`~veil.crypto.backend.default_backend` (looked up at each use)."""
        be = self._backend
        return default_backend() if be is None else be

    @backend.setter
    def backend(self, backend: HEBackend | None) -> None:
        self._backend = check_backend(backend)

    def _init_pool(self, backend: HEBackend | None = None) -> None:
        """The randomiser pool (offline phase): ``precompute`` fills it, encryption drains it;
        and the backend its batches run on (None: the default at each use)."""
        self._backend = check_backend(backend)
        self._pool: deque[np.ndarray] = deque()  # chunks (object arrays) of randomisers
        self._lock = threading.Lock()  # fixed-base tables
        self._pool_cv = threading.Condition()
        self._pending = 0  # randomisers a running precompute will still add
        self._owner: CRTTables | None = None  # set by the secret key, in its process only

    @abstractmethod
    def _fresh_randomisers(self, count: int) -> np.ndarray:
        """``count`` new randomisers (encryptions of zero), computed now."""

    def raw_random_zero(self, count: int) -> np.ndarray:
        """``count`` fresh encryptions of zero (randomisers).

        Pooled randomisers first; while a precompute is running, wait for its chunks
        rather than repeat its work; make only the rest."""
        out = np.empty(count, dtype=object)
        got = 0
        with self._pool_cv:
            while True:
                while self._pool and got < count:
                    chunk = self._pool[0]
                    k = min(len(chunk), count - got)
                    out[got : got + k] = chunk[:k]
                    got += k
                    if k == len(chunk):
                        self._pool.popleft()
                    else:
                        self._pool[0] = chunk[k:]
                if got >= count or self._pending == 0:
                    break
                self._pool_cv.wait()
        if got < count:
            out[got:] = self._fresh_randomisers(count - got)
        return out

    def _pool_empty(self) -> bool:
        """Nothing pooled and no precompute running (fresh randomisers will be made)."""
        with self._pool_cv:
            return not self._pool and self._pending == 0

    def pool_size(self) -> int:
        """How many precomputed randomisers are waiting."""
        with self._pool_cv:
            return sum(len(chunk) for chunk in self._pool)

    @abstractmethod
    def to_wire(self) -> dict[str, WireValue]:
        """Codec-compatible public parameters."""

    def precompute(self, count: int) -> None:
        """Fill the randomiser pool with ``count`` fresh randomisers ahead of time."""
        self._reserve(count)
        self._fill_reserved(count)

    def _reserve(self, count: int) -> None:
        """Announce ``count`` coming randomisers (before any encryption can look)."""
        if not isinstance(count, int) or count < 0:
            raise ConfigError("count", f"must be an int >= 0, got {count!r}", "")
        with self._pool_cv:
            self._pending += count

    def _fill_reserved(self, count: int) -> None:
        left = count
        try:
            while left > 0:  # usable as soon as each chunk is done
                made = self._fresh_randomisers(min(POOL_CHUNK, left))
                with self._pool_cv:
                    self._pool.append(made)
                    self._pending -= len(made)
                    left -= len(made)
                    self._pool_cv.notify_all()
        finally:
            with self._pool_cv:
                self._pending -= left
                self._pool_cv.notify_all()

    def precompute_async(self, count: int) -> Future[None]:
        """Fill the randomiser pool in the background, chunk by chunk; an encryption that
        runs meanwhile takes the chunks as they land (and makes any rest itself)."""
        self._reserve(count)
        return self.backend.background(self._fill_reserved, count)

    def encrypt(self, x: npt.ArrayLike, frac_bits: int | None = None) -> EncryptedArray:
        """Encrypt a numpy array (any shape) of floats or ints, element-wise.

        Floats are encoded with ``frac_bits`` (default 40: precision 2**-41), ints exactly.
        """
        from veil.crypto.encrypted import EncryptedArray

        a = enc.as_array(x, "x")
        is_float = enc.is_float_array(a)
        f = (enc.DEFAULT_FRAC_BITS if is_float else 0) if frac_bits is None else frac_bits
        if not isinstance(f, int) or not 0 <= f <= 1024:
            raise ConfigError("frac_bits", f"must be an int in 0..1024, got {f!r}", "")
        ints = enc.scale_to_int(a, f)
        bound = enc.max_abs_int(ints)
        self.check_bound(bound, "encrypt(x)")
        ct = self.raw_encrypt(ints.ravel()).reshape(a.shape)
        return EncryptedArray(self, ct, f, is_float, bound)

    def check_bound(self, bound: int, what: str) -> None:
        if bound > self.plain_bound:
            raise enc.HEOverflowError(
                what,
                bound,
                self.plain_bound,
                "scale the values down, use fewer frac bits, or a larger key / Paillier",
            )

    def pack_spec(
        self,
        slots: int,
        max_abs: float,
        max_terms: int = 1,
        frac_bits: int = 16,
    ) -> enc.PackSpec:
        """Layout for ``slots`` values ``|v| <= max_abs`` per ciphertext, summable
        ``max_terms`` times (e.g. the row count for a histogram); see :mod:`encoding`."""
        return enc.make_pack_spec(self.plain_bits, slots, max_abs, max_terms, frac_bits)

    def pack_capacity(self, max_abs: float, max_terms: int = 1, frac_bits: int = 16) -> int:
        """How many such values fit one ciphertext."""
        return enc.pack_capacity(self.plain_bits, max_abs, max_terms, frac_bits)

    def encrypt_packed(self, values: npt.ArrayLike, spec: enc.PackSpec) -> EncryptedArray:
        """Encrypt each row of ``values`` (shape (rows, spec.slots)) into one ciphertext."""
        from veil.crypto.encrypted import EncryptedArray

        if not isinstance(spec, enc.PackSpec):
            raise ConfigError("spec", "is not a PackSpec", "build one with pk.pack_spec(...)")
        ints = objects(enc.pack_rows(np.asarray(values), spec))
        ct = self.raw_encrypt(ints)
        terms = np.ones((len(ints), spec.slots), dtype=np.int64)
        return EncryptedArray(self, ct, 0, False, 0, pack=spec, terms=terms)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HEPublicKey) and self.to_wire() == other.to_wire()

    def __hash__(self) -> int:
        return hash((self.scheme, int(self.ct_modulus)))


class HESecretKey(ABC):
    """Secret key; ``decrypt`` returns numpy arrays. Its repr never shows key material."""

    public_key: HEPublicKey

    @abstractmethod
    def raw_decrypt(self, cts: np.ndarray, span: int) -> tuple[list[int], int]:
        """Residues of a 1-D object array of ciphertexts and the modulus they are exact mod.

        ``span`` bounds how many consecutive integers the plaintexts may take (``2b+1`` for
        signed values ``|v| <= b``); a scheme may then decrypt modulo a smaller prime.
        """

    def _check(self, c: EncryptedArray) -> None:
        from veil.crypto.encrypted import EncryptedArray

        if not isinstance(c, EncryptedArray):
            raise ConfigError("c", f"expected an EncryptedArray, got {type(c).__name__}", "")
        if c.pk != self.public_key:
            raise ConfigError("c", "was encrypted under another public key", "use its own key")

    def decrypt(self, c: EncryptedArray) -> np.ndarray:
        """Decrypt: float64 if the array holds floats, else int64 (object if any > 2**62)."""
        self._check(c)
        if c.pack is not None:
            raise ConfigError("c", "is packed", "use sk.decrypt_packed(c)")
        raw, n = self.raw_decrypt(c.ct.ravel(), 2 * c.bound + 1)
        half = n // 2
        signed = [v - n if v > half else v for v in raw]
        return enc.decode(signed, c.frac_bits, c.is_float).reshape(c.shape)

    def decrypt_packed(
        self, c: EncryptedArray, slots: int | None = None, rows: int | None = None
    ) -> np.ndarray:
        """Decrypt a packed array to shape (len(c), slots): float64 (int64 if frac_bits 0).

        For a ``compress()``-ed array pass the original ``slots`` and ``rows`` to get the
        original layout back (the result is reshaped to (-1, slots) and cut to ``rows``).
        """
        self._check(c)
        if c.pack is None or c.terms is None:
            raise ConfigError("c", "is not packed", "use sk.decrypt(c)")
        raw, _ = self.raw_decrypt(c.ct.ravel(), 1 << (c.pack.slots * c.pack.slot_bits))
        out = enc.unpack_rows(raw, c.terms, c.pack)
        if slots is not None:
            if slots < 1 or out.size % slots:
                raise ConfigError("slots", f"{slots} does not divide {out.shape}", "")
            out = out.reshape(-1, slots)
        return out if rows is None else out[:rows]

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.SecretKey {self.public_key.bits}-bit, hidden>"

    __str__ = __repr__
