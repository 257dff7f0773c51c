"""Silent VOLE over GF(2^128): two parties, semi-honest, for RR22-PSI.

Contract (what :mod:`.rr22` and anyone else may rely on):

- :func:`vole_sender` (the party holding Delta; in RR22 the OPRF sender) returns
  :class:`VoleSender` with ``delta`` (shape (2,), nonzero) and ``b`` (shape (n, 2));
- :func:`vole_receiver` returns :class:`VoleReceiver` with ``a`` and ``c`` (n, 2);
- for every row i: ``c[i] == b[i] ^ gf128.mul_const(a, delta)[i]``, i.e.
  c = b + a * Delta in GF(2^128) (:mod:`.gf128`'s representation); a and b are
  pseudorandom, Delta uniform and nonzero. Both roles must be called with the same n.
- streaming: :func:`vole_sender_chunks` / :func:`vole_receiver_chunks` take a list of
  sizes and yield one :class:`VoleSender` / :class:`VoleReceiver` per size, in order,
  each computed only when the caller asks for it (one size's outputs alive at a time),
  with the same contract per size and the same Delta in all; both roles must be called
  with the same sizes. ``vole_sender(n)`` is ``vole_sender_chunks([n])``'s one output.

Construction: the silent VOLE of Boyle, Couteau, Gilboa, Ishai, Kohl, Scholl
("Efficient Pseudorandom Correlation Generators: Silent OT Extension and More",
CRYPTO 2019; with Rindal, CCS 2019) with regular noise (Ferret, Yang et al. CCS 2020) and the
expand-convolute code of Raghuraman, Rindal, Tanguy (CRYPTO 2023), as libOTe's
``SilentVoleSender``/``SilentVoleReceiver`` and volePSI use it for RR22 (Raghuraman and
Rindal, CCS 2022). Parameters (:mod:`.lpn`): T >= 256 noise blocks of 2^d entries,
code size M = T 2^d >= 2n, expander weight 7, accumulator 24: 128-bit computational
security against linear attacks on dual LPN with the code's estimated minimum distance.

Chunks: each size is split into near-equal chunks of at most ``CHUNK_MAX`` = 2^20
outputs, each an independent instance of the above (its own noise, trees and code
application) that shares Delta, the base OTs and one IKNP extension: the work memory
is that of one chunk whatever n (n = 1.25 * 10^6: two chunks of T = 306 trees of 2^12
leaves), besides the outputs of the size being computed.

Flow (receiver R holds a, sender S holds Delta):
  1. R -> S  SETUP: n (all sizes together) and R's Chou-Orlandi base-OT point (:mod:`.ot`).
  2. S -> R  BASE_OT: 128 base-OT points, S's choices = the bits of Delta.
  3. R -> S  EXTEND (one per size, each continuing the one IKNP extension): the message
             u for the size's T*d + 128*T correlated OTs per chunk (:mod:`.cot`):
             R's choices are the bits off its GGM paths (alpha_j: the noise position
             of block j) and the 128 bits of each noise value beta_j. R sends the
             next size's EXTEND before it works on a size, so S never waits for it.
  4. S -> R  PPRF (one per chunk): per tree and level, the two GGM level sums masked
             by the random OT (:mod:`.ggm`), and fix_j = (sum of tree j's leaves) + z_j,
             where
             y_j = z_j + beta_j Delta is the Gilboa VOLE from the 128 COTs of beta_j.
  Then, locally: S has b' = the leaves; R has e (beta_j at alpha_j in block j, else 0)
  and c' = the leaves it knows, with c'[alpha_j] = fix_j + (its leaves of tree j) + y_j,
  so c' = b' + e Delta; both apply the code: b = G b', a = G e, c = G c'.
  Work that waits for no message runs while the peer computes: S expands its trees
  before EXTEND arrives, R computes a = G e before PPRF arrives.

What each party learns:
  - both: the sizes (and so T and d);
  - S: nothing about a (EXTEND is masked by AES-CTR streams of keys S does not know;
    R's choices, hence alpha and beta, stay hidden by IKNP);
  - R: nothing about Delta or b (it learns each tree's leaves except leaf alpha_j, and
    fix_j is masked by that leaf; the COTs hide Delta under the base OTs).
No frame carries Delta, a, b or c. ``policy`` is taken for the role-function convention;
no parameter here depends on it (128-bit computational security is fixed).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from veil import messages as msg
from veil.errors import ConfigError
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy
from veil.protocols.psi import cot, gf128, ggm, lpn, ot

__all__ = [
    "Tag",
    "VoleReceiver",
    "VoleSender",
    "vole_receiver",
    "vole_receiver_chunks",
    "vole_sender",
    "vole_sender_chunks",
]

PROTOCOL_VERSION = 1
CHUNK_MAX = 1 << 20  # outputs per independent LPN instance: bounds memory beyond n


class Tag(StrEnum):
    """Every message of this protocol."""

    SETUP = "vole_setup"  # R -> S: n, base-OT point A
    BASE_OT = "vole_base_ot"  # S -> R: 128 base-OT points
    EXTEND = "vole_extend"  # R -> S: IKNP columns u
    PPRF = "vole_pprf"  # S -> R: masked GGM level sums and the leaf-sum fixes


SETUP = msg.Record(
    {
        "version": msg.Int(PROTOCOL_VERSION, PROTOCOL_VERSION),
        "n": msg.Int(1, lpn.MAX_N),
        "point": msg.Blob(ot.POINT_BYTES),
    }
)
BASE_OT = msg.Blob(cot.WIDTH * ot.POINT_BYTES)
# EXTEND (one per size): msg.Array("uint8", (128, cots / 8)); PPRF (one per chunk):
# sums (T, d, 2, 2), fix (T, 2) uint64.


@dataclass(frozen=True, eq=False)
class VoleSender:
    """The Delta holder's output: c = b + a * delta holds with the receiver's a, c."""

    delta: np.ndarray = field(repr=False)
    b: np.ndarray = field(repr=False)


@dataclass(frozen=True, eq=False)
class VoleReceiver:
    """The other party's output: c = b + a * delta holds with the sender's b, delta."""

    a: np.ndarray = field(repr=False)
    c: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class _Chunk:
    """One independent dual-LPN instance: outputs start .. start + params.n - 1 of output
    ``out`` (one per requested size), its COTs from row cot0 (T d for the trees, then
    128 T for the noise values)."""

    out: int
    start: int
    params: lpn.LpnParams
    cot0: int

    @property
    def ggm_cots(self) -> int:
        return self.params.trees * self.params.depth

    @property
    def stop(self) -> int:
        return self.start + self.params.n


def _plan(*sizes: object) -> tuple[list[_Chunk], list[tuple[int, int]]]:
    """Each size split into near-equal chunks of at most CHUNK_MAX outputs, and each
    size's rows of COTs (its segment of the extension, a multiple of 128 rows)."""
    if not sizes:
        raise ConfigError("sizes", "no VOLE outputs asked for", "give at least one size")
    chunks, row = [], 0
    segments: list[tuple[int, int]] = []
    for out, n in enumerate(sizes):
        if isinstance(n, bool) or not isinstance(n, int):
            raise ConfigError("n", f"{n!r} is not an integer", "give the number of VOLE outputs")
        lpn.params_for(n)  # range check
        k = -(-n // CHUNK_MAX)
        size, extra = divmod(n, k)
        start = 0
        for i in range(k):
            params = lpn.params_for(size + (i < extra))
            chunks.append(_Chunk(out, start, params, row))
            start += params.n
            row += params.trees * (params.depth + cot.WIDTH)
        lo = segments[-1][1] if segments else 0
        segments.append((lo, lo + cot.padded(row - lo)))
        row = segments[-1][1]
    total = sum(c.params.n for c in chunks)
    if total > lpn.MAX_N:
        raise ConfigError("sizes", f"{total} VOLE outputs in all: at most {lpn.MAX_N}")
    return chunks, segments


def _powers() -> np.ndarray:
    """x^0 .. x^127 as a (128, 2) vector."""
    out = np.zeros((128, 2), dtype=np.uint64)
    k = np.arange(128)
    out[k, k // 64] = np.uint64(1) << (k % 64).astype(np.uint64)
    return out


def _gilboa(rows: np.ndarray, trees: int) -> np.ndarray:
    """sum_k x^k * rows[128 j + k] for each j: (T, 2)."""
    prod = gf128.mul(rows, np.tile(_powers(), (trees, 1)))
    out: np.ndarray = np.bitwise_xor.reduce(prod.reshape(trees, 128, 2), axis=1)
    return out


def _blocks(leaves: np.ndarray) -> np.ndarray:
    """GGM leaves (2^d, T, 2) -> the noise-vector layout (T * 2^d, 2), block j = tree j."""
    return np.ascontiguousarray(leaves.transpose(1, 0, 2)).reshape(-1, 2)


def _random_nonzero(n: int) -> np.ndarray:
    out = gf128.random(n)
    while True:
        zero = ~out.any(axis=1)
        if not zero.any():
            return out
        out[zero] = gf128.random(int(zero.sum()))


class _Codes(dict[lpn.LpnParams, lpn.Code]):
    """The code of each chunk size (at most two sizes), derived once."""

    def __missing__(self, params: lpn.LpnParams) -> lpn.Code:
        self[params] = lpn.code(params)
        return self[params]


def _sender_trees(ch: _Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand one chunk's trees: (b' in block layout, level sums, leaf sums)."""
    leaves, sums = ggm.expand_full(_random_nonzero(ch.params.trees), ch.params.depth)
    leaf_sums = np.bitwise_xor.reduce(leaves, axis=0)
    return _blocks(leaves), sums, leaf_sums


def vole_sender(session: Session, n: int, *, policy: SecurityPolicy = DEFAULT_POLICY) -> VoleSender:
    """Play the Delta holder for n VOLE outputs with the session's one peer."""
    (out,) = vole_sender_chunks(session, [n], policy=policy)
    return out


def vole_receiver(
    session: Session, n: int, *, policy: SecurityPolicy = DEFAULT_POLICY
) -> VoleReceiver:
    """Play the party without Delta for n VOLE outputs with the session's one peer."""
    (out,) = vole_receiver_chunks(session, [n], policy=policy)
    return out


def vole_sender_chunks(
    session: Session, sizes: Sequence[int], *, policy: SecurityPolicy = DEFAULT_POLICY
) -> Iterator[VoleSender]:
    """Play the Delta holder for outputs of ``sizes`` (one :class:`VoleSender` per size,
    in order, the same Delta in each), computing each only when asked for: one size's
    outputs are alive at a time unless the caller keeps them."""
    chunks, segments = _plan(*sizes)
    n = sum(c.params.n for c in chunks)
    peer = session.peers()[0]
    setup = msg.recv(session, peer, Tag.SETUP, SETUP)
    peer_n, point = setup["n"], setup["point"]
    if peer_n != n:
        raise ConfigError("n", f"the peer asks for {peer_n} VOLE outputs, this party {n}")
    if not isinstance(point, bytes):  # checked by SETUP; for the type checker
        raise TypeError("base-OT point")
    delta = _random_nonzero(1)[0]
    base = ot.BaseOtReceiver(cot.delta_choices(delta))
    points, keys = base.reply(point)
    session.send(peer, Tag.BASE_OT, points)

    first = [_sender_trees(chunks[0])]  # while the peer extends the OTs (needs no message)
    extension = cot.ExtendSender(keys, delta)
    codes = _Codes()
    i = 0
    for out, size in enumerate(sizes):
        lo, hi = segments[out]
        spec = msg.Array("uint8", (cot.WIDTH, (hi - lo) // 8))
        q = extension.next(msg.recv(session, peer, Tag.EXTEND, spec))  # rows lo .. hi - 1
        b = np.empty((size, 2), dtype=np.uint64)
        while i < len(chunks) and chunks[i].out == out:
            ch = chunks[i]
            blocks, sums, leaf_sums = first.pop() if first else _sender_trees(ch)
            t, d, g = ch.params.trees, ch.params.depth, ch.ggm_cots
            rows = q[ch.cot0 - lo : ch.cot0 - lo + g]
            idx = np.arange(ch.cot0, ch.cot0 + g, dtype=np.uint64)
            sums[:, :, 0] ^= cot.tccr(idx, rows).reshape(t, d, 2)
            sums[:, :, 1] ^= cot.tccr(idx, rows ^ delta).reshape(t, d, 2)
            z = _gilboa(q[ch.cot0 - lo + g : ch.cot0 - lo + g + cot.WIDTH * t], t)
            session.send(peer, Tag.PPRF, {"sums": sums, "fix": leaf_sums ^ z})
            g_ = codes[ch.params]
            lpn.encode(ch.params, blocks, inplace=True, the_code=g_, dest=b[ch.start : ch.stop])
            del blocks, sums
            i += 1
        del q
        yield VoleSender(delta=delta, b=b)
        del b


def vole_receiver_chunks(
    session: Session, sizes: Sequence[int], *, policy: SecurityPolicy = DEFAULT_POLICY
) -> Iterator[VoleReceiver]:
    """Play the party without Delta for outputs of ``sizes`` (one :class:`VoleReceiver`
    per size, in order), computing each only when asked for."""
    chunks, segments = _plan(*sizes)
    n = sum(c.params.n for c in chunks)
    peer = session.peers()[0]
    base = ot.BaseOtSender()
    session.send(peer, Tag.SETUP, {"version": PROTOCOL_VERSION, "n": n, "point": base.message})
    key_pairs = base.keys(msg.recv(session, peer, Tag.BASE_OT, BASE_OT), cot.WIDTH)

    noise = []  # per chunk: alpha (the noise positions), beta (the noise values)
    choices = np.zeros(segments[-1][1], dtype=np.uint8)
    for ch in chunks:
        t, d, g = ch.params.trees, ch.params.depth, ch.ggm_cots
        pos = np.frombuffer(secrets.token_bytes(8 * t), dtype="<u8") % np.uint64(1 << d)
        beta = _random_nonzero(t)
        noise.append((pos.astype(np.int64), beta))
        choices[ch.cot0 : ch.cot0 + g] = 1 - ggm.path_bits(pos, d).ravel()  # off the path
        choices[ch.cot0 + g : ch.cot0 + g + cot.WIDTH * t] = cot.delta_choices(beta)
    extension = cot.ExtendReceiver(key_pairs)

    def extend(out: int) -> np.ndarray:  # EXTEND for one size's COTs; their rows t
        u, t = extension.next(choices[segments[out][0] : segments[out][1]])
        session.send(peer, Tag.EXTEND, u)
        return t

    ahead = [extend(0)]
    codes = _Codes()
    i = 0
    for out, size in enumerate(sizes):
        rows = ahead.pop()
        if out + 1 < len(sizes):  # one size ahead: the peer never waits for its EXTEND
            ahead.append(extend(out + 1))
        a = np.empty((size, 2), dtype=np.uint64)
        c = np.empty((size, 2), dtype=np.uint64)
        while i < len(chunks) and chunks[i].out == out:
            _receive_chunk(
                session,
                peer,
                chunks[i],
                noise=noise[i],
                choices=choices,
                rows=rows,
                rows_from=segments[out][0],
                codes=codes,
                a=a,
                c=c,
            )
            i += 1
        del rows
        yield VoleReceiver(a=a, c=c)
        del a, c


def _receive_chunk(
    session: Session,
    peer: str,
    ch: _Chunk,
    *,
    noise: tuple[np.ndarray, np.ndarray],
    choices: np.ndarray,
    rows: np.ndarray,
    rows_from: int,
    codes: _Codes,
    a: np.ndarray,
    c: np.ndarray,
) -> None:
    """One chunk's a = G e and c = G c' into a[ch.start:ch.stop], c[ch.start:ch.stop]."""
    alpha, beta = noise
    t, d, g = ch.params.trees, ch.params.depth, ch.ggm_cots
    tree_ix = np.arange(t)
    # a = G e needs no message: compute it while the peer expands its trees
    e = np.zeros((t, 1 << d, 2), dtype=np.uint64)  # regular noise: beta_j at alpha_j
    e[tree_ix, alpha] = beta
    g_ = codes[ch.params]
    lpn.encode(ch.params, e.reshape(-1, 2), inplace=True, the_code=g_, dest=a[ch.start : ch.stop])
    del e
    spec = msg.Record(
        {"sums": msg.Array("uint64", (t, d, 2, 2)), "fix": msg.Array("uint64", (t, 2))}
    )
    pprf = msg.recv(session, peer, Tag.PPRF, spec)
    sums, fix = np.asarray(pprf["sums"]), np.asarray(pprf["fix"])
    side = choices[ch.cot0 : ch.cot0 + g].astype(np.int64)
    chosen = sums.reshape(g, 2, 2)[np.arange(g), side]
    idx = np.arange(ch.cot0, ch.cot0 + g, dtype=np.uint64)
    r0 = ch.cot0 - rows_from  # rows holds the COTs of this chunk's size only
    off_sums = (chosen ^ cot.tccr(idx, rows[r0 : r0 + g])).reshape(t, d, 2)
    leaves = ggm.expand_punctured(alpha, off_sums, d)
    y = _gilboa(rows[r0 + g : r0 + g + cot.WIDTH * t], t)
    known = np.bitwise_xor.reduce(leaves, axis=0)  # leaf alpha_j is zero in `leaves`
    c_prime = _blocks(leaves)
    del leaves
    c_prime.reshape(t, 1 << d, 2)[tree_ix, alpha] = fix ^ known ^ y
    lpn.encode(ch.params, c_prime, inplace=True, the_code=g_, dest=c[ch.start : ch.stop])
