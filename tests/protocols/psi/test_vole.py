"""Silent VOLE over GF(2^128): the correlation c = b + a * Delta for several n, over
memory and gRPC; its parts (COT, GGM, code) on their own; the wire; bad input."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from tests.protocols.psi.test_ecdh import TRANSPORTS
from tests.wire_check import Frame, Recorder, assert_no_leak
from veil import codec
from veil.errors import ConfigError, ProtocolError
from veil.net import Session, run_parties
from veil.policy import TEST_POLICY
from veil.protocols.psi import cot, gf128, ggm, lpn, ot, vole

S, R = "bank", "partner"


def run_vole(
    n: int, transport: str = "memory", tap: object = None
) -> tuple[vole.VoleSender, vole.VoleReceiver]:
    out = run_parties(
        {
            S: lambda s: vole.vole_sender(s, n, policy=TEST_POLICY),
            R: lambda s: vole.vole_receiver(s, n, policy=TEST_POLICY),
        },
        transport=transport,
        tap=tap,  # type: ignore[arg-type]
    )
    return out[S], out[R]


def check_correlation(snd: vole.VoleSender, rcv: vole.VoleReceiver, n: int) -> None:
    assert snd.delta.shape == (2,) and snd.delta.dtype == np.uint64 and snd.delta.any()
    for v in (snd.b, rcv.a, rcv.c):
        assert v.shape == (n, 2) and v.dtype == np.uint64
    assert np.array_equal(rcv.c, snd.b ^ gf128.mul_const(rcv.a, snd.delta))
    assert rcv.a.any(axis=1).all()  # no zero row (probability ~ n 2^-128)


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 4097, 1 << 16])
def test_correlation_memory(n: int) -> None:
    snd, rcv = run_vole(n)
    check_correlation(snd, rcv, n)


def test_correlation_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large n runs as independent LPN instances of at most CHUNK_MAX outputs."""
    monkeypatch.setattr(vole, "CHUNK_MAX", 1000)
    chunks, _ = vole._plan(2501)
    assert [c.params.n for c in chunks] == [834, 834, 833]
    rec = Recorder()
    snd, rcv = run_vole(2501, tap=rec)
    check_correlation(snd, rcv, 2501)
    assert sum(vole.Tag.PPRF.value in f.key for f in rec.frames) == 3


def test_chunked_api_gives_each_size_its_correlation(monkeypatch: pytest.MonkeyPatch) -> None:
    """vole_*_chunks: one output per size, in order, c = b + a * Delta in each, the same
    Delta; a size above CHUNK_MAX spans several LPN instances; one base-OT setup, one
    IKNP extension sent in one segment per size."""
    monkeypatch.setattr(vole, "CHUNK_MAX", 2000)
    sizes = [1000, 3, 4500, 128]

    def sender(s: Session) -> list[vole.VoleSender]:
        return list(vole.vole_sender_chunks(s, sizes, policy=TEST_POLICY))

    def receiver(s: Session) -> list[vole.VoleReceiver]:
        return list(vole.vole_receiver_chunks(s, sizes, policy=TEST_POLICY))

    rec = Recorder()
    out = run_parties({S: sender, R: receiver}, tap=rec)
    snd, rcv = out[S], out[R]
    assert len(snd) == len(rcv) == len(sizes)
    for size, sc, rc in zip(sizes, snd, rcv, strict=True):
        check_correlation(sc, rc, size)
        assert np.array_equal(sc.delta, snd[0].delta)
    assert sum(vole.Tag.PPRF.value in f.key for f in rec.frames) == 1 + 1 + 3 + 1
    assert sum(vole.Tag.SETUP.value in f.key for f in rec.frames) == 1  # one setup for all
    assert sum(vole.Tag.EXTEND.value in f.key for f in rec.frames) == len(sizes)
    with pytest.raises(ConfigError, match="sizes"):
        vole._plan()
    with pytest.raises(ConfigError, match="n"):
        vole._plan(5, 0)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_correlation_transports(transport: str) -> None:
    snd, rcv = run_vole(777, transport=transport)
    check_correlation(snd, rcv, 777)


def test_outputs_look_random() -> None:
    snd, rcv = run_vole(20000)
    for v in (rcv.a, snd.b, rcv.c):
        density = np.unpackbits(v.view(np.uint8)).mean()
        assert 0.49 < density < 0.51
        assert len(np.unique(v, axis=0)) == len(v)
    weights = np.unpackbits(rcv.a.view(np.uint8).reshape(-1, 16), axis=1).sum(axis=1)
    assert weights.min() > 20  # no low-weight a (binomial(128, 1/2): P(<= 20) ~ 2^-50)
    snd2, rcv2 = run_vole(20000)  # fresh randomness each run
    assert not np.array_equal(snd.delta, snd2.delta)
    assert not np.array_equal(rcv.a[:10], rcv2.a[:10])


def test_wire_carries_no_output() -> None:
    rec = Recorder()
    n = 1500
    snd, rcv = run_vole(n, tap=rec)
    check_correlation(snd, rcv, n)
    keys = " ".join(rec.keys())
    assert len(rec.frames) == 4 and all(t.value in keys for t in vole.Tag)
    rows = {
        "delta": [gf128.to_bytes(snd.delta)],
        "a": [gf128.to_bytes(r) for r in rcv.a[:64]],
        "b": [gf128.to_bytes(r) for r in snd.b[:64]],
        "c": [gf128.to_bytes(r) for r in rcv.c[:64]],
    }
    # each 16-byte element is checked as an id (raw, hashed, encoded); wire_check's numeric
    # check does not see uint64 words, so the rows are the check
    assert_no_leak(rec.frames, rows)
    for name, leaked in (("delta", snd.delta), ("b", snd.b[10:12]), ("c", rcv.c[60:64])):
        doctored = [*rec.frames, Frame(1, 0, "vole_pprf", codec.encode({"x": leaked}))]
        with pytest.raises(AssertionError, match=name):  # the check can fail
            assert_no_leak(doctored, rows)


# -- the parts ------------------------------------------------------------------------------


def _base_ots() -> tuple[np.ndarray, list[bytes], list[tuple[bytes, bytes]]]:
    """A fresh Delta and the 128 base OTs of its bits: (Delta, the sender's keys, the
    receiver's key pairs), as :func:`veil.protocols.psi.vole` sets them up."""
    delta = gf128.random(1)[0]
    recv = ot.BaseOtReceiver(cot.delta_choices(delta))
    send = ot.BaseOtSender()
    points, keys = recv.reply(send.message)
    return delta, keys, send.keys(points, cot.WIDTH)


def test_cot_correlation() -> None:
    delta, keys, pairs = _base_ots()
    choices = np.random.default_rng(1).integers(0, 2, 256).astype(np.uint8)
    u, t = cot.extend_receiver(pairs, choices)
    q = cot.extend_sender(keys, delta, u)
    want = q ^ (choices.astype(np.uint64)[:, None] * np.uint64(0xFFFFFFFFFFFFFFFF) & delta)
    assert np.array_equal(t, want)
    assert gf128.to_int(delta) == sum(int(b) << i for i, b in enumerate(cot.delta_choices(delta)))


def test_ggm_puncturing() -> None:
    t, d = 9, 5
    roots = gf128.random(t)
    leaves, sums = ggm.expand_full(roots, d)
    alpha = np.array([0, 31, 7, 16, 15, 1, 30, 3, 20])
    off = sums[np.arange(t)[:, None], np.arange(d)[None, :], 1 - ggm.path_bits(alpha, d)]
    got = ggm.expand_punctured(alpha, off, d)
    want = leaves.copy()
    want[alpha, np.arange(t)] = 0
    assert np.array_equal(got, want)
    assert len(np.unique(leaves.reshape(-1, 2), axis=0)) == t << d
    # leaf i = sum of its path bits b_l 2^l: the last level's left side is the lower half
    assert np.array_equal(sums[:, -1, 0], np.bitwise_xor.reduce(leaves[: 1 << (d - 1)], axis=0))


def test_code_is_linear_and_native_matches_fallback() -> None:
    p = lpn.params_for(3000)
    assert p.size >= 2 * p.n and p.trees >= lpn.noise_weight() == 256
    x, y = gf128.random(p.size), gf128.random(p.size)
    gx = lpn.encode(p, x)
    assert np.array_equal(gx ^ lpn.encode(p, y), lpn.encode(p, x ^ y))
    assert np.array_equal(gx, lpn.encode(p, x, mod=lpn._NONE))
    both = np.concatenate([x, y], axis=1)
    assert np.array_equal(
        lpn.encode(p, both, mod=lpn._NONE), np.concatenate([gx, lpn.encode(p, y)], axis=1)
    )
    mod = gf128.native()
    if mod is not None:

        class Broken:
            accumulate = staticmethod(lambda x, bits, acc, cols: None)  # skips the convolution
            expand = staticmethod(mod.expand)

        assert lpn._self_test(mod) and not lpn._self_test(Broken)  # type: ignore[arg-type]
    big = lpn.params_for(1_250_000)
    assert (big.trees, big.depth) == (306, 13)


# -- bad input and malformed peers --------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -5, 1.5, True, "10", lpn.MAX_N + 1])
def test_bad_n(n: object) -> None:
    with pytest.raises(ConfigError, match="n"):
        run_parties({S: lambda s: vole.vole_sender(s, n), R: lambda s: None})  # type: ignore[arg-type]


def test_n_mismatch() -> None:
    with pytest.raises(ConfigError, match="asks for 10"):
        run_parties({S: lambda s: vole.vole_sender(s, 11), R: lambda s: vole.vole_receiver(s, 10)})


def _against_sender(fake: Callable[[Session], None], n: int = 50) -> None:
    run_parties({S: lambda s: vole.vole_sender(s, n), R: fake})


def _against_receiver(fake: Callable[[Session], None], n: int = 50) -> None:
    run_parties({S: fake, R: lambda s: vole.vole_receiver(s, n)})


def _good_point() -> bytes:
    return ot.BaseOtSender().message


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ({"version": 1, "n": 50}, "vole_setup.point: missing"),
        ({"version": 1, "n": 0, "point": b"x" * 32}, "vole_setup.n"),
        ({"version": 9, "n": 50, "point": b"x" * 32}, "vole_setup.version"),
        ({"version": 1, "n": 50, "point": b"x" * 31}, "vole_setup.point"),
    ],
)
def test_malformed_setup(setup: dict[str, object], match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        _against_sender(lambda s: s.send(S, vole.Tag.SETUP, setup))


def test_malformed_extend() -> None:
    def fake(s: Session) -> None:
        s.send(S, vole.Tag.SETUP, {"version": 1, "n": 50, "point": _good_point()})
        s.recv(S, vole.Tag.BASE_OT)
        s.send(S, vole.Tag.EXTEND, np.zeros((128, 7), dtype=np.uint8))

    with pytest.raises(ProtocolError, match="vole_extend"):
        _against_sender(fake)


def test_malformed_base_ot() -> None:
    def fake(s: Session) -> None:
        s.recv(R, vole.Tag.SETUP)
        s.send(R, vole.Tag.BASE_OT, b"\x00" * 100)

    with pytest.raises(ProtocolError, match="vole_base_ot"):
        _against_receiver(fake)


@pytest.mark.parametrize("bad", ["sums", "fix", "missing"])
def test_malformed_pprf(bad: str) -> None:
    p = lpn.params_for(50)

    def fake(s: Session) -> None:
        setup = s.recv(R, vole.Tag.SETUP)
        assert isinstance(setup, dict)
        delta = gf128.random(1)[0]
        points, _ = ot.BaseOtReceiver(cot.delta_choices(delta)).reply(setup["point"])
        s.send(R, vole.Tag.BASE_OT, points)
        s.recv(R, vole.Tag.EXTEND)
        sums = np.zeros((p.trees, p.depth + (bad == "sums"), 2, 2), dtype=np.uint64)
        fix = np.zeros((p.trees, 2), dtype=np.uint32 if bad == "fix" else np.uint64)
        body = {"sums": sums} if bad == "missing" else {"sums": sums, "fix": fix}
        s.send(R, vole.Tag.PPRF, body)

    with pytest.raises(ProtocolError, match="vole_pprf"):
        _against_receiver(fake)


def test_extension_in_segments_is_one_extension() -> None:
    """cot.ExtendReceiver/Sender: segments continue the column streams, so two segments
    give the rows of one extension of their total length."""
    delta, keys, pairs = _base_ots()
    choices = np.random.default_rng(2).integers(0, 2, 384).astype(np.uint8)
    u_all, t_all = cot.extend_receiver(pairs, choices)
    ext_r, ext_s = cot.ExtendReceiver(pairs), cot.ExtendSender(keys, delta)
    rows_t, rows_q = [], []
    for lo, hi in ((0, 128), (128, 384)):
        u, t = ext_r.next(choices[lo:hi])
        assert np.array_equal(u, u_all[:, lo // 8 : hi // 8])
        rows_t.append(t)
        rows_q.append(ext_s.next(u))
    t, q = np.concatenate(rows_t), np.concatenate(rows_q)
    assert np.array_equal(t, t_all)
    mask = choices.astype(np.uint64)[:, None] * np.uint64(0xFFFFFFFFFFFFFFFF)
    assert np.array_equal(t, q ^ (mask & delta))
