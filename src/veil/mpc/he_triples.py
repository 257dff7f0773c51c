"""Beaver triples and matrix masks made by the two compute parties alone, under
additively homomorphic encryption (Paillier or OU, :mod:`veil.crypto.he`): no dealer.

SecureML's LHE-based offline phase (Mohassel and Zhang, IEEE S&P 2017, section IV-B),
with slot packing. Each party draws its random parts (``a``, ``b``, its mask shares)
from its own secret seed, so ``c = (a0 + a1)(b0 + b1)`` splits into two local products
and two cross terms ``a0 b1`` and ``a1 b0``. A cross term ``U @ V`` (party u holds U,
party v holds V, all entries ring words < 2^64) becomes shares like this:

  1. v -> u  Enc_v(V), ``slots`` columns of V packed per plaintext (each slot wide
     enough for a sum of k products of 64-bit words plus the mask below);
  2. u -> v  Enc_v(U @ V + R) (packed alike), computed homomorphically; ``R`` is
     uniform in [0, 2^(val_bits + stat_sec)) per entry and freshly encrypted (so the
     ciphertext's randomness is new too);
  3. v decrypts: its share is ``(U @ V + R) mod 2^64``, u's is ``-R mod 2^64``.

Element-wise cross terms (``mul`` triples) run alike, one value per ciphertext.
Finally both parties add/subtract a common PRG stream (seed from party 0) to their
``c`` shares: a block that only one party's local product fills (e.g. the owner's own
Gram block) would otherwise leave the other a zero share, and SecureML's truncation is
correct only for a uniformly random share. It changes no party's knowledge: each could
already compute the other's re-randomised share exactly when it could the original.
Cross terms of triples over the same mask rows (one per epoch for a fixed batch) are
generated together, so one encryption of V carries several epochs' columns.

Cost: a slot of 64-bit words needs ``128 + log2 k + stat_sec`` bits (3 per OU-2048
plaintext, 11 per Paillier-2048 one) and every exponent is a 64-bit word. A product
with a short inner dimension ``k`` (a Gram matrix's width: the per-step triples of
SS-LR's ``gram`` way) uses Straus's window tables shared by all rows
(:mod:`veil.mpc.multiexp`, about 2.5x fewer modular products than Pippenger at k = 24);
a long one (a batch's rows) Pippenger's buckets. Products of the parties' own bounded
data need no triple at all: :mod:`veil.mpc.he_cross` makes their shares directly with
narrow slots and small exponents (SS-LR without a dealer: 39 s -> 7.5 s on synth20k).

What each party learns: ciphertexts under the other's key (semantically secure), and
the decryption of ``U @ V + R``: statistically within ``2^-stat_sec`` of uniform given
its own inputs (the mask has ``stat_sec`` more bits than the largest product sum).
Key sizes and ``stat_sec`` come from :class:`veil.policy.SecurityPolicy`.
Messages: ``he_triple_key`` (:mod:`veil.mpc.he_keys`: public key; party 0's also the common seed),
``he_triple_operand`` (Enc_v(V), one per cross term), ``he_triple_product``
(Enc_v(U @ V + R), one per cross term).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from veil.crypto import he
from veil.crypto.kernels import objects
from veil.errors import ConfigError, ProtocolError
from veil.mpc.channel import Channel
from veil.mpc.he_keys import HEKeys, exchange_keys
from veil.mpc.multiexp import pippenger_cost, shared_base_multi_exp, straus_cost
from veil.mpc.plan import Kind, Plan, Spec
from veil.mpc.prg import PRG, new_seed
from veil.mpc.ring import Share
from veil.mpc.slots import pack, unpack
from veil.mpc.triples import TripleStore, full_product, mask_share, random_part
from veil.policy import DEFAULT_POLICY, SecurityPolicy

__all__ = ["HEKeys", "HEStore", "Tag", "exchange_keys", "he_store"]

_MASK64 = (1 << 64) - 1


class Tag(StrEnum):
    """Messages of HE triple generation."""

    OPERAND = "he_triple_operand"
    PRODUCT = "he_triple_product"


@dataclass
class _Job:
    """One cross term ``U @ V`` (or ``U * V`` element-wise) with u = ``u``; members are
    the triples whose cross terms it carries, side by side in V's columns/elements."""

    u: int
    kind: str  # "mm" or "ew"
    members: list[int] = field(default_factory=list)


class HEStore(TripleStore):
    """A triple store filled under HE; ``keys`` may serve further HE work with the same
    peer (:func:`veil.mpc.he_cross.gram_shares`)."""

    def __init__(  # noqa: PLR0917
        self, party: int, plan: Plan, prg: PRG, cs: list[Share], seconds: float, keys: HEKeys
    ) -> None:
        super().__init__(party, plan, prg)
        self._cs = cs
        self.offline_seconds = seconds
        self.keys = keys

    def _c(self, index: int, phase: int, spec: Spec, shape: tuple[int, ...]) -> Share:
        return self._cs[index]


def he_store(
    ch: Channel,
    party: int,
    parties: tuple[str, str],
    plan: Plan,
    *,
    scheme: str = "ou",
    key_bits: int = 2048,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> HEStore:
    """Generate every triple of ``plan`` with the peer under HE; return this party's store."""
    t0 = time.perf_counter()
    keys = exchange_keys(ch, party, parties, scheme=scheme, key_bits=key_bits, policy=policy)
    pk, sk, peer_pk, common = keys.pk, keys.sk, keys.peer_pk, keys.common
    peer = parties[1 - party]
    prg = PRG(new_seed())
    gen = _Generator(plan, party, prg, policy.stat_sec)
    cs = gen.local_products()
    jobs = gen.jobs()
    for job in jobs:  # 1. encrypt our V of every cross term where we are v
        if job.u != party:
            ch.send(peer, Tag.OPERAND, gen.encrypt_operand(job, pk))
    shares: list[tuple[_Job, Share]] = []
    for job in jobs:  # 2. compute the products where we are u
        if job.u == party:
            wire, mine = gen.product(job, ch.recv(peer, Tag.OPERAND), peer_pk)
            ch.send(peer, Tag.PRODUCT, wire)
            shares.append((job, mine))
    for job in jobs:  # 3. decrypt the products of our operands
        if job.u != party:
            shares.append((job, gen.decrypt(job, ch.recv(peer, Tag.PRODUCT), sk)))
    for job, share in shares:
        gen.place(job, share, cs)
    rerand = PRG(common)  # public between the two: see the module docstring
    for i, c in enumerate(cs):
        r = rerand.words(f"r{i}", c.shape)
        cs[i] = c + r if party == 0 else c - r
    return HEStore(party, plan, prg, cs, time.perf_counter() - t0, keys)


class _Generator:
    """This party's view of the plan's cross terms: its operands, products and shares."""

    def __init__(self, plan: Plan, party: int, prg: PRG, stat_sec: int) -> None:
        self.plan = plan
        self.party = party
        self.prg = prg
        self.stat_sec = stat_sec
        self.flat = plan.flat()
        self.masks = {k: mask_share(prg, plan, k, party) for k in plan.masks}
        self._parts: dict[int, dict[str, Share]] = {}

    def parts(self, index: int) -> dict[str, Share]:
        if index not in self._parts:
            spec = self.flat[index][1]
            shapes = self.plan.shapes(spec)
            self._parts[index] = {
                k: random_part(self.prg, index, k, s) for k, s in shapes.items() if k != "c"
            }
        return self._parts[index]

    def local_products(self) -> list[Share]:
        """``a_i b_i`` of every triple (this party's own term of ``c``)."""
        return [
            full_product(self.plan, s, self.parts(i), self.masks)
            for i, (_, s) in enumerate(self.flat)
        ]

    # -- which cross terms -----------------------------------------------------------
    def _cols(self, key: str, party: int) -> np.ndarray:
        return self.plan.masks[key].columns_of(party)

    def jobs(self) -> list[_Job]:
        groups: dict[tuple[Any, ...], _Job] = {}
        for i, (_, spec) in enumerate(self.flat):
            for u in (0, 1):
                if spec.kind in (Kind.MASKED, Kind.MASKED_T) and not len(self._cols(spec.mask, u)):
                    continue
                if spec.kind is Kind.CROSS and not (
                    len(self._cols(spec.mask, u)) and len(self._cols(spec.other, 1 - u))
                ):
                    continue
                if spec.kind is Kind.CROSS and spec.mask == spec.other:
                    # a Gram matrix: M1^T M0 is the transpose of M0^T M1, so one cross
                    # term does; v (who encrypts its columns) is the one with fewer
                    wide = int(len(self._cols(spec.mask, 1)) > len(self._cols(spec.mask, 0)))
                    if u != wide:
                        continue
                if spec.kind is Kind.MUL:
                    key: tuple[Any, ...] = ("ew", u)
                elif spec.kind in (Kind.MASKED, Kind.MASKED_T):
                    key = (str(spec.kind), spec.mask, spec.rowset, u)
                else:
                    key = ("one", i, u)
                job = groups.setdefault(key, _Job(u, "ew" if spec.kind is Kind.MUL else "mm"))
                job.members.append(i)
        return list(groups.values())

    def _u_operand(self, job: _Job) -> Share:
        """u's operand (the same for every member of the job)."""
        spec = self.flat[job.members[0]][1]
        p = self.parts(job.members[0])
        if spec.kind is Kind.MUL:
            return np.concatenate([self.parts(i)["a"].ravel() for i in job.members])
        if spec.kind is Kind.MATMUL:
            return p["a"]
        if spec.kind is Kind.CROSS:
            rows = self.plan.rows_of(spec)
            return self.masks[spec.mask][rows][:, self._cols(spec.mask, self.party)].T
        M = self.masks[spec.mask][self.plan.rows_of(spec)][:, self._cols(spec.mask, self.party)]
        return M if spec.kind is Kind.MASKED else M.T

    def _v_operand(self, job: _Job) -> Share:
        """v's operand: its parts of every member, side by side."""
        cols = []
        for i in job.members:
            spec, p = self.flat[i][1], self.parts(i)
            if spec.kind is Kind.MUL:
                cols.append(p["b"].ravel())
            elif spec.kind is Kind.MATMUL:
                cols.append(p["b"])
            elif spec.kind is Kind.CROSS:
                rows = self.plan.rows_of(spec)
                cols.append(self.masks[spec.other][rows][:, self._cols(spec.other, self.party)])
            elif spec.kind is Kind.MASKED:
                cols.append(p["b"][self._cols(spec.mask, job.u)])
            else:
                cols.append(p["b"])
        return np.concatenate(cols) if job.kind == "ew" else np.hstack(cols)

    def place(self, job: _Job, share: Share, cs: list[Share]) -> None:
        """Add this party's share of a job's result to its members' ``c``."""
        pos = 0
        for i in job.members:
            spec, c = self.flat[i][1], cs[i]
            if job.kind == "ew":
                c += share[pos : pos + c.size].reshape(c.shape)
                pos += c.size
                continue
            if spec.kind is Kind.CROSS:
                width = len(self._cols(spec.other, 1 - job.u))
            else:
                width = c.shape[1]
            block = share[:, pos : pos + width]
            pos += width
            if spec.kind is Kind.MASKED_T:
                c[self._cols(spec.mask, job.u)] += block
            elif spec.kind is Kind.CROSS:
                cu, cv = self._cols(spec.mask, job.u), self._cols(spec.other, 1 - job.u)
                c[np.ix_(cu, cv)] += block
                if spec.mask == spec.other:
                    c[np.ix_(cv, cu)] += block.T
            else:
                c += block

    # -- the HE steps ----------------------------------------------------------------
    def _layout(self, job: _Job, pk: he.HEPublicKey, k: int) -> tuple[int, int, int]:
        """(value bits, slot bits, slots per ciphertext) of a job with inner size ``k``."""
        val = 128 + max(k, 1).bit_length()
        slot = val + self.stat_sec + 1
        cap = pk.plain_bound.bit_length() - 2
        slots = 1 if job.kind == "ew" else max(1, cap // slot)
        if slot * slots > cap:
            raise ConfigError("triples.key_bits", f"{pk.bits}-bit keys cannot hold a triple slot")
        return val, slot, slots

    def encrypt_operand(self, job: _Job, pk: he.HEPublicKey) -> dict[str, Any]:
        V = self._v_operand(job)
        if job.kind == "ew":
            return {"ct": pk.encrypt(_ints(V)).to_wire()}
        _, slot, slots = self._layout(job, pk, V.shape[0])
        return {"ct": pk.encrypt(pack(V, slot, slots)).to_wire(), "cols": V.shape[1]}

    def product(self, job: _Job, msg: Any, pk: he.HEPublicKey) -> tuple[dict[str, Any], Share]:
        """u: Enc(U @ V + R) for the peer, and u's share ``-R``."""
        U = self._u_operand(job)
        try:
            c = he.EncryptedArray.from_wire(pk, msg["ct"])
        except (KeyError, TypeError) as e:
            raise ProtocolError(f"{Tag.OPERAND}.ct: {e}") from None
        label = f"he/{job.members[0]}/{job.u}/{job.kind}"
        if job.kind == "ew":
            if c.shape != U.shape:
                raise ProtocolError(f"{Tag.OPERAND}.ct: shape {c.shape}, expected {U.shape}")
            val, _, _ = self._layout(job, pk, 1)
            R = objects(self.prg.below(label, U.shape[0], val + self.stat_sec))
            out = c * _ints(U) + pk.encrypt(R)
            return {"ct": out.to_wire()}, _neg_low64(R)
        ncols = msg.get("cols") if isinstance(msg, dict) else None
        val, slot, slots = self._layout(job, pk, U.shape[1])
        groups = -(-int(ncols or 0) // slots)
        if not isinstance(ncols, int) or c.shape != (U.shape[1], groups):
            raise ProtocolError(f"{Tag.OPERAND}.ct: shape {c.shape} does not fit U {U.shape}")
        R = objects(self.prg.below(label, U.shape[0] * ncols, val + self.stat_sec))
        R2 = R.reshape(U.shape[0], ncols)
        Rp = pack(R2, slot, slots)
        k = U.shape[1]
        if straus_cost(k, U.shape[0], 64)[0] < pippenger_cost(k, U.shape[0], 64):
            m = pk.ct_modulus  # a short inner dimension: window tables shared by the rows
            U = np.asarray(U, dtype=np.uint64)
            cols = [list(c.ct[:, g]) for g in range(groups)]
            prods = [
                he.EncryptedArray(pk, objects(col), 0, False, 0)
                for col in shared_base_multi_exp(pk.backend, cols, U, m)
            ]
        else:
            Ut = _ints(U.T)
            prods = [c[:, g].matmul(Ut) for g in range(groups)]
        outs = [prods[g] + pk.encrypt(Rp[:, g]) for g in range(groups)]
        wire = he.concatenate(outs).to_wire() if outs else None
        return {"ct": wire, "rows": U.shape[0], "cols": ncols}, _neg_low64(R).reshape(R2.shape)

    def decrypt(self, job: _Job, msg: Any, sk: he.HESecretKey) -> Share:
        """v: decrypt ``U @ V + R`` and keep it mod 2^64."""
        pk = sk.public_key
        V = self._v_operand(job)
        try:
            c = he.EncryptedArray.from_wire(pk, msg["ct"])
        except (KeyError, TypeError) as e:
            raise ProtocolError(f"{Tag.PRODUCT}.ct: {e}") from None
        if job.kind == "ew":
            if c.shape != V.shape:
                raise ProtocolError(f"{Tag.PRODUCT}.ct: shape {c.shape}, expected {V.shape}")
            return _low64([int(v) for v in sk.decrypt(c)])
        rows = msg.get("rows")
        _, slot, slots = self._layout(job, pk, V.shape[0])
        groups = -(-V.shape[1] // slots)
        if not isinstance(rows, int) or c.shape != (groups * rows,):
            raise ProtocolError(f"{Tag.PRODUCT}.ct: shape {c.shape} for {rows} rows")
        words = unpack(sk.decrypt(c).tolist(), slot, slots)  # (groups * rows, slots)
        out = words.reshape(groups, rows, slots).transpose(1, 0, 2)
        return out.reshape(rows, groups * slots)[:, : V.shape[1]]


def _ints(a: Share) -> np.ndarray:
    """Ring words as an object array of non-negative Python ints."""
    out = np.empty(a.shape, dtype=object)
    out.ravel()[:] = [int(v) for v in np.asarray(a, dtype=np.uint64).ravel()]
    return out


def _neg_low64(R: np.ndarray) -> Share:
    return np.array([(-int(v)) & _MASK64 for v in R.ravel()], dtype=np.uint64).reshape(R.shape)


def _low64(vals: list[int]) -> Share:
    return np.array([v & _MASK64 for v in vals], dtype=np.uint64)
