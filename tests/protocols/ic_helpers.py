"""Shared helpers of the interconnection tests: data sets, running two parties, ports."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.message import DecodeError, Message

from veil.net.transport import Transport
from veil.protocols.interconnect import IcPsiOptions, IcPsiResult, run_interconnect_psi
from veil.protocols.interconnect.proto import ecdh_psi_pb2, entry_pb2

UNICODE = ["ü-ñ-中文", "Ωmega", "😀", "ß∂ƒ-ĳ", "नमस्ते", "مرحبا"]
#: Ids the SecretFlow peer cannot take as they are (its CSV reader has no quoting, trims
#: spaces and refuses empty keys); Veil-vs-Veil tests use them too.
TRICKY = ["a,b", " lead", "trail ", "", 'q"uote']


def make_sets(
    n0: int, n1: int, overlap: int, *, seed: int = 0, prefix: str = "", tricky: bool = True
) -> tuple[list[str], list[str]]:
    """Two id lists with ``overlap`` common ids, duplicates and unicode mixed in."""
    rnd = random.Random(seed)
    common = [f"{prefix}c{i}" for i in range(overlap)]
    a = common + [f"{prefix}a{i}" for i in range(max(0, n0 - overlap))]
    b = common + [f"{prefix}b{i}" for i in range(max(0, n1 - overlap))]
    if n0 > 10 and n1 > 10:
        odd = UNICODE + TRICKY if tricky else UNICODE
        a += odd[::2] + odd[1:4] + a[:3]  # shared unicode and duplicated ids
        b += odd[1::2] + odd[2:5] + b[:2]
    rnd.shuffle(a)
    rnd.shuffle(b)
    return a, b


def expected_rows(mine: Sequence[str], theirs: Sequence[str]) -> list[int]:
    """Indices of ``mine`` whose id is in ``theirs`` (plaintext intersection)."""
    s = set(theirs)
    return [i for i, x in enumerate(mine) if x in s]


def run_pair(
    transports: Sequence[Transport],
    sets: Sequence[Sequence[str]],
    opts: Sequence[IcPsiOptions],
    timeout: float = 60.0,
) -> list[Any]:
    """Run both parties in threads; return their IcPsiResult or the exception each raised."""
    out: list[Any] = [None, None]

    def work(r: int) -> None:
        try:
            out[r] = run_interconnect_psi(transports[r], list(sets[r]), opts[r])
        except Exception as e:
            out[r] = e

    ths = [threading.Thread(target=work, args=(r,), daemon=True) for r in (0, 1)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(timeout)
    assert not any(t.is_alive() for t in ths), "a party hung"
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def first_common(mine: Sequence[str], theirs: Sequence[str]) -> set[int]:
    """First-occurrence positions in ``mine`` of the ids also in ``theirs``."""
    s, seen, out = set(theirs), set(), set()
    for i, x in enumerate(mine):
        if x in s and x not in seen:
            out.add(i)
        seen.add(x)
    return out


def check_result(res: IcPsiResult, mine: Sequence[str], theirs: Sequence[str]) -> None:
    """One index per distinct common id, and every row of a common id in rows()."""
    assert isinstance(res, IcPsiResult), res
    assert res.indices is not None
    assert len(res.indices) == len(set(res.indices.tolist()))
    assert set(res.indices.tolist()) == first_common(mine, theirs)
    assert res.rows() == expected_rows(mine, theirs)
    assert res.n_input == len(mine) and res.n_distinct == len(set(mine))


def same_order(r0: IcPsiResult, r1: IcPsiResult, a: Sequence[str], b: Sequence[str]) -> None:
    """Both receivers list the common ids in the same order."""
    assert r0.indices is not None and r1.indices is not None
    assert [a[i] for i in r0.indices] == [b[i] for i in r1.indices]


_IC_MESSAGES: tuple[type[Message], ...] = (
    ecdh_psi_pb2.EcdhPsiCipherBatch,
    entry_pb2.HandshakeRequest,
    entry_pb2.HandshakeResponse,
)


def decode_ic_frame(payload: bytes) -> object:
    """One interconnection frame as wire_check should walk it (its ``decode=``).

    The connect (empty) and FIN (``b"0"``) frames are returned as they are. Any other
    frame must be one of the messages the protocol sends, with no unknown fields (bytes
    there would escape the walk): it parses, and without unknown fields serializes back
    to the very same bytes. Anything else raises, and wire_check reports the frame.
    """
    if payload in (b"", b"0"):
        return payload
    for cls in _IC_MESSAGES:
        try:
            msg = cls.FromString(payload)
        except DecodeError:
            continue
        known = cls()
        known.CopyFrom(msg)
        known.DiscardUnknownFields()
        if known.SerializeToString(deterministic=True) == payload:
            return known
    raise ValueError(f"not an interconnection message: {payload[:16]!r}...")


Check = Callable[[IcPsiResult, Sequence[str], Sequence[str]], None]
