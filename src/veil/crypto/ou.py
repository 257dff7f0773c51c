"""Okamoto-Uchiyama encryption [Okamoto-Uchiyama 1998], accelerated as in
[Coron-Naccache-Paillier 1999, "Accelerating Okamoto-Uchiyama's public-key cryptosystem"].

Keys: ``n = p^2 q`` (2048 bits by default; ``p``, ``q`` about 683 bits), ``p = t u + 1`` with
``t`` a prime of 2 x 112 = 224 bits. Public ``G = g^u mod n`` and ``H = g'^(n u) mod n``.
Encryption ``c = G^m H^r mod n`` with ``r`` a fresh uniform 224-bit exponent; decryption
``m = L(c^t mod p^2) / L(G^t mod p^2) mod p``, ``L(x) = (x - 1)/p`` -- a 224-bit exponent
instead of ``p - 1``, which is what makes OU decryption fast. Plaintexts live mod ``p``
(signed range ``|m| < 2**(|p| - 2)``, about 2**681: ample for gradients and counts).

Security of the shortcuts: semantic security rests on the p-subgroup assumption (as hard
as factoring ``n``); the 224-bit ``t`` and ``r`` resist Pollard-rho / baby-step-giant-step
on the exponent at 2**112 work, the level of a 2048-bit modulus (SecretFlow HEU uses 110-bit
``r``, i.e. 2**55 against BSGS; we do not). ``G^m`` and ``H^r`` use fixed-base tables,
built on first use: with the C kernel (:mod:`veil.crypto._native`), 14-bit windows for
``H`` (15 Montgomery products per randomiser, a 67 MiB table shared by the threads of one
process) and 11-bit windows for ``G`` (33 MiB if packed plaintexts use every row);
without it, 12-bit windows as Python objects (about 45 MiB per process in all). The
process that holds the secret key computes ``G^m H^r`` mod ``p^2`` and mod ``q`` and joins
the two (:mod:`veil.crypto._owner`): the same ciphertext, 1.3x cheaper.

Where OU must NOT be used: it is malleable and not CCA-secure -- anyone who can get the
key holder to decrypt a ciphertext of their choice and see the result can factor ``n``
(a crafted ``G^x`` with ``x > p`` decrypts to ``x mod p``). Use it only in the semi-honest
setting where the key holder never returns raw decryptions of ciphertexts it did not make
itself, never for long-lived keys shared across jobs, and never where sums can exceed
2**681 (use Paillier there). Fine for SecureBoost gradient histograms and bin counts.

What each party learns: as for Paillier -- the key holder every plaintext it decrypts, a
public-key holder nothing beyond shapes and the public encoding metadata.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from veil.crypto import _owner
from veil.crypto._fixedbase import FixedBase
from veil.crypto._native import kernel
from veil.crypto._scheme import (
    HEPublicKey,
    HESecretKey,
    check_backend,
    check_policy,
)
from veil.crypto.backend import HEBackend
from veil.crypto.encrypted import EncryptedArray, concatenate
from veil.errors import ConfigError, ProtocolError
from veil.policy import DEFAULT_POLICY, TEST_POLICY, SecurityPolicy

__all__ = [
    "DEFAULT_POLICY",
    "TEST_POLICY",
    "EncryptedArray",
    "PublicKey",
    "SecretKey",
    "SecurityPolicy",
    "concatenate",
    "generate_keypair",
]

if TYPE_CHECKING:
    from veil.codec import WireValue

SCHEME = "ou"
SUBGROUP_BITS = 224  # 2 x 112-bit security
H_WINDOW = 12
H_WINDOW_NATIVE = 14  # 67 MB for 2048-bit n (Montgomery rows, built in C in 0.2-0.4 s)
G_WINDOW = 11


class PublicKey(HEPublicKey):
    """OU public key ``(n, G, H)`` and the public size of ``p``."""

    scheme = SCHEME

    def __init__(
        self, n: int, G: int, H: int, p_bits: int, *, backend: HEBackend | None = None
    ) -> None:
        self.n = mpz(n)
        self.G, self.H = mpz(G), mpz(H)
        self.p_bits = int(p_bits)
        self.bits = int(self.n.bit_length())
        self.ct_modulus = self.n
        self.ct_bytes = (self.bits + 7) // 8
        self.plain_bits = self.p_bits - 1
        self.plain_bound = (1 << (self.p_bits - 2)) - 1
        self.rand_bits = SUBGROUP_BITS
        self._tables: dict[str, FixedBase] = {}
        self._init_pool(backend)

    def __repr__(self) -> str:
        return f"<ou.PublicKey {self.bits}-bit>"

    def _table(self, which: str) -> FixedBase:
        with self._lock:
            if which not in self._tables:
                threads = self.backend.workers
                if which == "H":  # wider windows where the C kernel builds the table
                    w = H_WINDOW if kernel() is None else H_WINDOW_NATIVE
                    t = FixedBase(self.H, self.n, self.rand_bits, w, threads)
                else:
                    base = self.G if which == "G" else gmpy2.invert(self.G, self.n)
                    # every plaintext fits; rows are built only up to the longest one
                    # used (packed plaintexts reach the upper windows)
                    t = FixedBase(base, self.n, self.p_bits, G_WINDOW, threads)
                self._tables[which] = t
            return self._tables[which]

    def _fresh_randomisers(self, count: int) -> np.ndarray:
        owned = self._owner_randomisers("H", count)
        return self.backend.random_pow(self._table("H"), count) if owned is None else owned

    def raw_plain(self, ms: np.ndarray) -> np.ndarray:
        vals = [int(m) for m in ms]
        out = np.empty(len(vals), dtype=object)
        lim = 1 << self.p_bits
        pos = [i for i, v in enumerate(vals) if 0 <= v < lim]
        neg = [i for i, v in enumerate(vals) if -lim < v < 0]
        if pos:
            out[pos] = self.backend.fixed_pow(self._table("G"), [vals[i] for i in pos])
        if neg:
            out[neg] = self.backend.fixed_pow(self._table("Ginv"), [-vals[i] for i in neg])
        for i, v in enumerate(vals):
            if not -lim < v < lim:  # rare huge plaintexts: plain square-and-multiply
                out[i] = gmpy2.powmod(self.G, v, self.n)
        return out

    def raw_encrypt(self, ms: np.ndarray) -> np.ndarray:
        """As :meth:`HEPublicKey.raw_encrypt`; a key owner with nothing pooled computes
        ``G^m H^r`` as one CRT chain per element (no separate randomiser)."""
        owner = self._crt()
        groups = self._groups(ms, owner) if owner is not None and self._pool_empty() else None
        if owner is None or groups is None:
            return super().raw_encrypt(ms)
        out = np.empty(len(ms), dtype=object)
        for which, idx, digits in groups:
            out[idx] = _owner_chain(self.backend, owner, which, digits, None)
        return out

    def raw_plain_times(self, ms: np.ndarray, cts: np.ndarray) -> np.ndarray:
        """``cts[i] * G**ms[i]`` as one table chain per element, started from ``cts[i]``
        (through the owner's CRT tables where this process holds the secret key)."""
        owner = self._crt()
        groups = self._groups(ms, owner)
        if groups is None:
            return super().raw_plain_times(ms, cts)
        out = np.empty(len(ms), dtype=object)
        for which, idx, digits in groups:
            if owner is None:
                out[idx] = self.backend.table_pow(self._table(which), digits, cts[idx])
            else:
                out[idx] = _owner_chain(self.backend, owner, which, digits, cts[idx])
        return out

    def _groups(
        self, ms: np.ndarray, owner: _owner.CRTTables | None
    ) -> list[tuple[str, np.ndarray, np.ndarray]] | None:
        """``(table, indices, window digits of |m|)`` for ``G`` (m >= 0) and ``G^-1``
        (m < 0); None where :meth:`raw_plain` serves instead: plaintexts of 62 bits or
        more without an owner, or any beyond ``2**p_bits``."""
        table = self._table if owner is None else owner.table
        try:
            small: np.ndarray | None = np.array(ms.tolist(), dtype=np.int64)
        except OverflowError:
            small = None
        if small is not None and small.size and int(np.abs(small).max()) >= 1 << 62:
            small = None
        if small is not None:
            signs = small < 0
            mags: Any = np.abs(small)
        elif owner is None:
            return None
        else:
            vals = [int(m) for m in ms]
            if any(abs(v) >> self.p_bits for v in vals):
                return None
            signs, mags = np.array([v < 0 for v in vals], dtype=bool), [abs(v) for v in vals]
        out = []
        for which, idx in (("G", np.flatnonzero(~signs)), ("Ginv", np.flatnonzero(signs))):
            if idx.size:
                part = mags[idx] if small is not None else [mags[i] for i in idx.tolist()]
                out.append((which, idx, table(which).int_digits(part)))
        return out

    def _threaded(self) -> bool:
        return self._table("H").native()

    def to_wire(self) -> dict[str, WireValue]:
        return {
            "scheme": SCHEME,
            "n": int(self.n),
            "G": int(self.G),
            "H": int(self.H),
            "p_bits": self.p_bits,
        }

    @classmethod
    def from_wire(
        cls,
        obj: object,
        policy: SecurityPolicy = DEFAULT_POLICY,
        *,
        backend: HEBackend | None = None,
    ) -> PublicKey:
        """Public key from :meth:`to_wire`; checks size (against ``policy``) and ranges.
        Its batches run on ``backend`` (None: the default backend)."""
        check_policy(policy)
        if not isinstance(obj, dict):
            raise ProtocolError(f"malformed {SCHEME} public key: not a dict")
        try:
            if obj["scheme"] != SCHEME:
                raise ProtocolError(f"expected an {SCHEME} key, got {obj['scheme']!r}")
            n, G, H, p_bits = mpz(obj["n"]), mpz(obj["G"]), mpz(obj["H"]), int(obj["p_bits"])
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"malformed OU public key: {e}") from e
        policy.check_key_bits(SCHEME, int(n.bit_length()), "public_key.n")
        ok = 3 * p_bits <= n.bit_length() + 3 and p_bits > SUBGROUP_BITS + 8
        if not ok or not (1 < G < n and 1 < H < n) or gmpy2.gcd(G * H, n) != 1:
            raise ProtocolError("OU public key fails its sanity checks")
        return cls(n, G, H, p_bits, backend=backend)


class SecretKey(HESecretKey):
    """OU secret key (``p``, ``t`` and ``L(G^t)^-1``); never printed."""

    public_key: PublicKey

    def __init__(self, public_key: PublicKey, p: int, t: int) -> None:
        self.public_key = public_key
        self._p, self._t = mpz(p), mpz(t)
        self._p2 = self._p * self._p
        if public_key.n % self._p2 != 0:
            raise ConfigError("p", "does not divide the public modulus", "")
        gt = gmpy2.powmod(public_key.G % self._p2, self._t, self._p2)
        self._gt_inv = gmpy2.invert((gt - 1) // self._p, self._p)
        if kernel() is not None:  # this process may encrypt mod p^2 and q (see veil.crypto._owner)
            pk = public_key
            public_key._owner = _owner.CRTTables(
                self._p2,
                pk.n // self._p2,
                {
                    "H": (pk.H, pk.rand_bits, H_WINDOW_NATIVE),
                    "G": (pk.G, pk.p_bits, G_WINDOW),
                    "Ginv": (gmpy2.invert(pk.G, pk.n), pk.p_bits, G_WINDOW),
                },
                pk.backend.workers,
            )

    def raw_decrypt(self, cts: np.ndarray, span: int) -> tuple[list[int], int]:
        p, p2 = self._p, self._p2
        xs = self.public_key.backend.powmod_base_list([c % p2 for c in cts], self._t, p2)
        return [int((x - 1) // p * self._gt_inv % p) for x in xs], int(p)


def _owner_chain(
    be: HEBackend,
    owner: _owner.CRTTables,
    which: str,
    digits: np.ndarray,
    start: np.ndarray | None,
) -> np.ndarray:
    """``start * base**e`` for the exponents whose window digits are given, through the
    owner's CRT tables, over threads; with no ``start``, times a fresh ``H^r``."""
    parts = [(which, digits)]
    if start is None:
        parts.insert(0, ("H", owner.table("H").random_digits(len(digits))))
    return be.map_ranges(
        lambda a, b: owner.chain(
            [(name, d[a:b]) for name, d in parts], None if start is None else start[a:b]
        ),
        len(digits),
    )


def _rand_prime(bits: int) -> mpz:
    while True:
        p = gmpy2.next_prime(mpz(secrets.randbits(bits) | (3 << (bits - 2))))
        if p.bit_length() == bits:
            return p


def generate_keypair(
    bits: int = 2048,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
    backend: HEBackend | None = None,
) -> tuple[PublicKey, SecretKey]:
    """New OU key pair with a ``bits``-bit ``n = p^2 q`` (>= 2048 unless ``policy`` allows)."""
    check_policy(policy).check_key_bits(SCHEME, bits, "bits")
    check_backend(backend)
    p_bits = (bits + 2) // 3
    t_bits = min(SUBGROUP_BITS, p_bits // 3)
    while True:
        t = _rand_prime(t_bits)
        lo, hi = (1 << (p_bits - 1)) // t + 1, ((1 << p_bits) - 2) // t
        while True:
            u = lo + secrets.randbelow(int(hi - lo))
            p = t * u + 1
            if gmpy2.is_prime(p, 40):
                break
        q = _rand_prime(bits - 2 * p_bits)
        n = p * p * q
        if n.bit_length() == bits and p != q:
            break
    p2 = p * p
    while True:
        g = mpz(secrets.randbelow(int(n) - 2) + 2)
        gp = gmpy2.powmod(g % p2, p - 1, p2)
        if gmpy2.gcd(g, n) == 1 and gp != 1:
            break  # g^(p-1) has order p mod p^2, so G^t generates the plaintext group
    while True:
        g2 = mpz(secrets.randbelow(int(n) - 2) + 2)
        if gmpy2.gcd(g2, n) == 1:
            break
    G = gmpy2.powmod(g, u, n)
    H = gmpy2.powmod(g2, n * u, n)
    pk = PublicKey(n, G, H, p_bits, backend=backend)
    return pk, SecretKey(pk, p, t)
