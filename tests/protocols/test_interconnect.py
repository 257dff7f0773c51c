"""Interconnection-mode ECDH-PSI, Veil against Veil: results, wire format, refusals."""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time

import pytest

from tests.protocols.ic_helpers import (
    check_result,
    decode_ic_frame,
    make_sets,
    run_pair,
    same_order,
)
from tests.wire_check import Recorder, assert_no_leak
from veil.errors import ConfigError, PeerTimeout
from veil.net.memory import MemoryHub
from veil.net.transport import Transport
from veil.protocols.interconnect import HandshakeRefused, IcPsiOptions
from veil.protocols.interconnect.ecdh import BodyOptions
from veil.protocols.interconnect.proto import ecdh_psi_pb2, entry_pb2
from veil.protocols.interconnect.vocab import ErrorCode

KEY = re.compile(r"^(root|root-0):P2P-(\d+):(\d)->(\d)$")


def opts(rank: int, rtr: int = -1, **kw: object) -> IcPsiOptions:
    return IcPsiOptions(rank=rank, result_to_rank=rtr, timeout=10, fin_timeout=5, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("rtr", [-1, 0, 1])
@pytest.mark.parametrize("sizes", [(1, 1, 1), (1, 5, 0), (300, 200, 120), (0, 3, 0)])
def test_both_ranks_match_plaintext(rtr: int, sizes: tuple[int, int, int]) -> None:
    a, b = make_sets(*sizes)
    hub = MemoryHub(2)
    small = BodyOptions(batch_size=64)  # several batches even for small sets
    res = run_pair(
        [hub.transport(0), hub.transport(1)],
        [a, b],
        [opts(0, rtr, body=small), opts(1, rtr, body=small)],
    )
    for r, (mine, theirs) in enumerate([(a, b), (b, a)]):
        if rtr in (-1, r):
            check_result(res[r], mine, theirs)
        else:
            assert res[r].indices is None
        assert res[r].fin_received
        assert res[r].peer_item_num == len(set(theirs))
    if rtr == -1:
        same_order(res[0], res[1], a, b)


def test_wire_is_what_the_reference_peer_sends() -> None:
    a, b = make_sets(300, 200, 120, prefix="customer-id-")
    rec = Recorder()
    hub = MemoryHub(2, tap=rec)
    body = BodyOptions(batch_size=100)
    run_pair([hub.transport(0), hub.transport(1)], [a, b], [opts(0, body=body), opts(1, body=body)])
    frames = rec.frames
    keys = rec.keys()
    assert "connect_0\x01\x020" in keys and "connect_1\x01\x020" in keys
    assert keys.count("FIN\x01\x02") == 2
    assert all(f[3] == b"0" for f in frames if f[2] == "FIN\x01\x02")
    # per channel and direction, counters run 1..n without gaps
    seen: dict[tuple[str, str, str], list[int]] = {}
    for k in keys:
        m = KEY.match(k)
        if m:
            seen.setdefault((m[1], m[3], m[4]), []).append(int(m[2]))
    for nums in seen.values():
        assert sorted(nums) == list(range(1, len(nums) + 1))
    # root: 1 handshake message + ceil(n/100) enc batches + the empty last one
    na, nb = len(set(a)), len(set(b))  # distinct ids are sent
    assert len(seen[("root", "0", "1")]) == 1 + -(-na // 100) + 1
    assert len(seen[("root", "1", "0")]) == 1 + -(-nb // 100) + 1
    assert len(seen[("root-0", "0", "1")]) == -(-nb // 100) + 1  # dual.enc of b
    for _, _, key, payload in frames:
        m = KEY.match(key)
        if not m or (m[2] == "1" and m[1] == "root"):
            continue
        batch = ecdh_psi_pb2.EcdhPsiCipherBatch.FromString(payload)
        width = 32 if m[1] == "root" else 12
        assert batch.type == ("enc" if m[1] == "root" else "dual.enc")
        assert len(batch.ciphertext) == batch.count * width
        assert batch.is_last_batch == (batch.count == 0)
    # no id crosses the wire, in any encoding or as a hash (the empty id would match
    # the empty connect frames, so it is left out)
    assert_no_leak(frames, {"ids": sorted({*a, *b} - {""})}, decode=decode_ic_frame)


def test_decode_ic_frame_lets_wire_check_see_planted_ids() -> None:
    ids = ["customer-id-c1", "customer-id-c2"]
    digest = hashlib.sha256(ids[1].encode()).digest()
    batch = ecdh_psi_pb2.EcdhPsiCipherBatch(type="enc", count=1, ciphertext=digest)
    with pytest.raises(AssertionError, match="sha256"):
        assert_no_leak(
            [(0, 1, "k", batch.SerializeToString())], {"ids": ids}, decode=decode_ic_frame
        )
    hidden = batch.SerializeToString() + b"\x7a\x0e" + ids[0].encode()  # unknown field 15
    with pytest.raises(AssertionError, match="does not decode"):
        assert_no_leak([(0, 1, "k", hidden)], {"ids": ids}, decode=decode_ic_frame)
    clean = ecdh_psi_pb2.EcdhPsiCipherBatch(type="enc", count=1, ciphertext=bytes(range(32)))
    assert_no_leak([(0, 1, "k", clean.SerializeToString())], {"ids": ids}, decode=decode_ic_frame)


class ShufflingTransport(Transport):
    """Delivers each message after a random delay, so keys arrive out of order."""

    def __init__(self, inner: Transport, seed: int) -> None:
        self.inner = inner
        self.rank = inner.rank
        self.stats = inner.stats
        self.rnd = random.Random(seed)

    def send(self, dst: int, key: str, payload: bytes) -> None:
        delay = self.rnd.random() * 0.02
        threading.Timer(delay, self.inner.send, args=(dst, key, payload)).start()

    def recv(self, src: int, key: str, timeout: float, peer_name: str = "") -> bytes:
        return self.inner.recv(src, key, timeout, peer_name)

    def abort(self, reason: str) -> None:
        self.inner.abort(reason)


def test_out_of_order_arrival() -> None:
    a, b = make_sets(500, 400, 150, seed=3)
    hub = MemoryHub(2)
    ts = [ShufflingTransport(hub.transport(r), r) for r in (0, 1)]
    body = BodyOptions(batch_size=37)
    res = run_pair(ts, [a, b], [opts(0, body=body), opts(1, body=body)])
    check_result(res[0], a, b)
    check_result(res[1], b, a)


@pytest.mark.parametrize(
    ("o0", "o1", "code", "why"),
    [
        (opts(0, -1), opts(1, 0), ErrorCode.HANDSHAKE_REFUSED, "result_to_rank"),
        (opts(0, 1), opts(1, 0), ErrorCode.HANDSHAKE_REFUSED, "result_to_rank"),
        (opts(0), opts(1, handshake_version=3), ErrorCode.UNSUPPORTED_VERSION, "version 3"),
        (opts(0, handshake_version=1), opts(1), ErrorCode.UNSUPPORTED_VERSION, "version 2"),
    ],
)
def test_refused_handshake_fails_fast_on_both_sides(
    o0: IcPsiOptions, o1: IcPsiOptions, code: int, why: str
) -> None:
    hub = MemoryHub(2)
    t0 = time.monotonic()
    res = run_pair([hub.transport(0), hub.transport(1)], [["x"], ["x"]], [o0, o1])
    assert time.monotonic() - t0 < 5
    for r in (0, 1):
        assert isinstance(res[r], HandshakeRefused), res[r]
        assert res[r].code == code
        assert why in str(res[r])


def test_unknown_curve_is_refused_with_the_standard_code() -> None:
    from veil.protocols.interconnect import handshake as hs
    from veil.protocols.interconnect.proto import ecc_pb2
    from veil.protocols.interconnect.suite import CURVE25519

    terms = hs.Terms(CURVE25519, 10, -1)
    req = entry_pb2.HandshakeRequest.FromString(hs.build_request(1, terms))
    ecc = ecc_pb2.EccProtocolProposal()
    req.protocol_family_params[0].Unpack(ecc)
    ecc.ec_suits[0].curve = 2  # SM2
    ecc.ec_suits[0].hash = 1  # SM3
    ecc.ec_suits[0].hash2curve_strategy = 1
    req.protocol_family_params[0].Pack(ecc)
    code, reason, items = hs.judge_request(req.SerializeToString(), terms)
    assert code == ErrorCode.HANDSHAKE_REFUSED and "ec suits" in reason and items == 10
    rsp = entry_pb2.HandshakeResponse.FromString(hs.build_response(code, reason, terms, 10))
    with pytest.raises(HandshakeRefused, match="ec suits"):
        hs.read_response(rsp.SerializeToString(), terms)
    garbage = hs.judge_request(b"\xff\xff", terms)
    assert garbage[0] == ErrorCode.INVALID_REQUEST


def test_missing_peer_times_out_with_a_clear_message() -> None:
    hub = MemoryHub(2)
    o = IcPsiOptions(rank=0, connect_timeout=0.3, fin_timeout=0.1)
    from veil.protocols.interconnect import run_interconnect_psi

    with pytest.raises(PeerTimeout, match="did not connect"):
        run_interconnect_psi(hub.transport(0), ["x"], o)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"rank": 2}, "rank"),
        ({"rank": 0, "result_to_rank": 5}, "result_to_rank"),
        ({"rank": 0, "curve": "sm2"}, "curve"),
        ({"rank": 0, "curve": "p256"}, "curve"),
        ({"rank": 0, "body": BodyOptions(batch_size=0)}, "batch_size"),
        ({"rank": 0, "body": BodyOptions(threads=0)}, "threads"),
    ],
)
def test_bad_options_name_the_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        IcPsiOptions(**kw)  # type: ignore[arg-type]
    assert e.value.field == field


def test_equals_the_native_psi_step() -> None:
    from veil.net.local import run_parties
    from veil.protocols.psi import PsiParams, run_psi

    a, b = make_sets(400, 300, 150, seed=9)
    params = PsiParams(result_to=("p0", "p1"), batch_size=128)
    native = run_parties(
        {"p0": lambda s: run_psi(s, a, params), "p1": lambda s: run_psi(s, b, params)}
    )
    hub = MemoryHub(2)
    ic = run_pair([hub.transport(0), hub.transport(1)], [a, b], [opts(0), opts(1)])
    for r, p in enumerate(["p0", "p1"]):
        assert set(ic[r].indices.tolist()) == set(native[p].indices.tolist())
        assert ic[r].n_distinct == native[p].n_distinct


def test_non_string_ids_are_refused() -> None:
    from veil.protocols.interconnect import run_interconnect_psi

    hub = MemoryHub(2)
    with pytest.raises(ConfigError, match="position 1"):
        run_interconnect_psi(hub.transport(0), ["a", None, "c"], opts(0))  # type: ignore[list-item]


def test_public_facade() -> None:
    import veil.protocols.interconnect as ic

    assert sorted(ic.__all__) == sorted(
        ["SUITES", "HandshakeRefused", "IcPsiOptions", "IcPsiResult", "run_interconnect_psi",
         "run_psi_interconnect"]
    )  # fmt: skip
    assert all(hasattr(ic, n) for n in ic.__all__)
