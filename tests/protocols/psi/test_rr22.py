"""RR22-PSI: correctness against Python sets, result routing, privacy of the wire,
option and message checks, the output matching, and the job step with ``protocol: rr22``."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jobs.conftest import write_job, write_table
from tests.protocols.psi.test_ecdh import (
    BANK,
    PARTNER,
    TRANSPORTS,
    check_both,
    check_receiver,
    overlapping_sets,
    plain_forms,
)
from tests.protocols.psi.test_ecdh import psi_pair as _psi_pair
from tests.wire_check import Recorder, assert_no_leak
from veil import codec
from veil.errors import ConfigError, ProtocolError
from veil.jobs import RunOptions, load_job, run_job
from veil.net import Session, run_parties
from veil.protocols.psi import Protocol, PsiParams, PsiResult, run_psi
from veil.protocols.psi import rr22 as rr22_psi
from veil.protocols.psi.ecdh import IdChunks


def psi_pair(bank: Sequence[str], partner: Sequence[str], **kw: object) -> dict[str, PsiResult]:
    return _psi_pair(bank, partner, protocol=Protocol.RR22, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_duplicates_unicode_and_both_results(transport: str) -> None:
    bank = ["张三", "alice", "", "bob", "alice", "Ωmega", "dup", "dup", "zoë", "only-bank"]
    partner = ["zoë", "dup", "bob", "张三", "", "carol", "dup", "Ωmega ", "bob"]
    out = psi_pair(bank, partner, transport=transport)
    check_both(out, bank, partner)
    assert out[BANK].size == 5  # 张三, "", bob, dup, zoë


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_random_sets_with_overlap(transport: str) -> None:
    a, b = overlapping_sets(3000, 2000, 700, seed=31)
    check_both(psi_pair(a, b, transport=transport), a, b)


def test_long_and_nul_ids_of_many_lengths() -> None:
    base = ["", "a", "a\x00", "\x00", "x" * 15, "x" * 16, "x" * 17, "y" * 300, "é" * 70]
    a = base + [f"{i}" * (i % 40) for i in range(200)]
    b = base[::2] + [f"{i}" * (i % 40) for i in range(100, 300)]
    check_both(psi_pair(a, b), a, b)


@pytest.mark.parametrize(("n", "m"), [(1000, 100_000), (100_000, 1000)])
def test_unequal_sizes(n: int, m: int) -> None:
    a, b = overlapping_sets(n, m, 600, seed=32)
    check_both(psi_pair(a, b), a, b)


@pytest.mark.parametrize("result_to", [(BANK,), (PARTNER,)])
def test_result_to_one_party(result_to: tuple[str, ...]) -> None:
    a, b = overlapping_sets(300, 500, 120, seed=33)
    out = psi_pair(a, b, result_to=result_to)
    me, other = result_to[0], ({BANK, PARTNER} - set(result_to)).pop()
    mine, theirs = (a, b) if me == BANK else (b, a)
    check_receiver(out[me], mine, theirs)
    assert out[other].indices is None and out[other].size is None
    assert out[other].peer_n_distinct == len(set(mine))


@pytest.mark.parametrize(
    ("bank", "partner"), [([], []), ([], ["x", "y"]), (["x", "x"], []), (["x"], ["y"])]
)
def test_empty_and_disjoint_sets(bank: list[str], partner: list[str]) -> None:
    out = psi_pair(bank, partner)
    check_both(out, bank, partner)
    assert out[BANK].size == 0


def test_full_intersection() -> None:
    a = [f"id-{i}" for i in range(500)]
    out = psi_pair(a, a[::-1])
    check_both(out, a, a[::-1])
    assert out[BANK].size == 500


def test_role_functions_directly() -> None:
    a, b = overlapping_sets(100, 80, 30, seed=34)
    p = PsiParams(result_to=(PARTNER,), protocol=Protocol.RR22)
    out = run_parties(
        {
            BANK: lambda s: rr22_psi.run_oprf_sender(s, a, p),
            PARTNER: lambda s: rr22_psi.run_oprf_receiver(s, b, p),
        }
    )
    check_receiver(out[PARTNER], b, a)
    with pytest.raises(ConfigError, match="result_to"):
        run_parties(
            {
                BANK: lambda s: rr22_psi.run_oprf_receiver(s, a, p),
                PARTNER: lambda s: rr22_psi.run_oprf_receiver(s, b, p),
            }
        )


@settings(max_examples=10, deadline=None)
@given(
    st.lists(st.text(max_size=4), max_size=20),
    st.lists(st.text(max_size=4), max_size=20),
)
def test_property_matches_set_intersection(bank: list[str], partner: list[str]) -> None:
    check_both(psi_pair(bank, partner), bank, partner)


def test_nothing_raw_crosses_the_wire() -> None:
    rng = random.Random(35)
    a = [f"customer-{uuid.UUID(int=rng.getrandbits(128))}" for _ in range(150)]
    b = a[:60] + [f"prospect-{i:06d}" for i in range(100)]
    rec = Recorder()
    out = psi_pair(a, b, tap=rec)
    check_both(out, a, b)
    assert len(rec.frames) >= 6
    assert_no_leak(
        rec.frames, {"ids": a + b, "hashed ids": [p for x in a + b for p in plain_forms(x)]}
    )


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"protocol": "vole"}, "protocol"),
        ({"result_to": ("bank", "carol")}, "carol"),
        ({"truncate_bits": 41}, "below log2"),
    ],
)
def test_bad_params_are_rejected(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _psi_pair(["a", "b", "c"], ["b"], **({"protocol": Protocol.RR22} | kw))  # type: ignore[arg-type]


def test_parties_must_run_the_same_protocol() -> None:
    pk = PsiParams(result_to=(BANK, PARTNER), protocol=Protocol.KKRT)
    pr = PsiParams(result_to=(BANK, PARTNER), protocol=Protocol.RR22)
    with pytest.raises(ConfigError, match="protocol"):
        run_parties(
            {BANK: lambda s: run_psi(s, ["a"], pr), PARTNER: lambda s: run_psi(s, ["a"], pk)},
            timeout=20,
        )


def _liar_receiver(s: Session, masked: object) -> None:
    s.send(BANK, rr22_psi.Tag.SETUP, {"seed": bytes(16)})
    s.send(BANK, rr22_psi.Tag.HELLO, s.recv(BANK, rr22_psi.Tag.HELLO) | {"n": 1})
    rr22_psi.vole.vole_receiver(s.sub("vole"), rr22_psi.okvs.params_for(1).m)
    s.send(BANK, rr22_psi.Tag.OKVS, {"seed": bytes(16)})
    s.send(BANK, rr22_psi.Tag.MASKED, masked)
    s.recv(BANK, "never", timeout=5)


@pytest.mark.parametrize(
    ("masked", "match"),
    [
        (np.zeros((3, 2), dtype=np.uint64), "masked: axis 0 has length 3"),
        (np.zeros((128, 2), dtype=np.int64), "masked: dtype int64"),
        (b"\x00" * 4096, "masked: expected an array"),
    ],
)
def test_malformed_okvs_is_a_protocol_error(masked: object, match: str) -> None:
    p = PsiParams(result_to=(PARTNER,), protocol=Protocol.RR22)
    with pytest.raises(ProtocolError, match=match):
        run_parties(
            {
                BANK: lambda s: rr22_psi.run_oprf_sender(s, ["a"], p),
                PARTNER: lambda s: _liar_receiver(s, masked),
            }
        )


def test_malformed_setup_and_values_are_protocol_errors() -> None:
    p = PsiParams(result_to=(PARTNER,), protocol=Protocol.RR22)

    def bad_setup(s: Session) -> None:
        s.send(BANK, rr22_psi.Tag.SETUP, {"seed": bytes(15)})
        s.recv(BANK, "never", timeout=5)

    with pytest.raises(ProtocolError, match=r"setup\.seed: 15 bytes"):
        run_parties({BANK: lambda s: rr22_psi.run_oprf_sender(s, ["a"], p), PARTNER: bad_setup})

    def short_values(s: Session) -> None:
        s.recv(PARTNER, rr22_psi.Tag.SETUP)
        s.send(PARTNER, rr22_psi.Tag.HELLO, s.recv(PARTNER, rr22_psi.Tag.HELLO) | {"n": 1})
        rr22_psi.vole.vole_sender(s.sub("vole"), rr22_psi.okvs.params_for(1).m)
        s.send(PARTNER, rr22_psi.Tag.VALUES, b"\x00" * 3)
        s.recv(PARTNER, "never", timeout=5)

    with pytest.raises(ProtocolError, match="values: 3 bytes"):
        run_parties(
            {BANK: short_values, PARTNER: lambda s: rr22_psi.run_oprf_receiver(s, ["a"], p)}
        )


def test_value_width() -> None:
    assert rr22_psi.value_bytes(10**6, 10**6, None) == 10  # 40 + log2(1e12) = 79.9 bits
    assert rr22_psi.value_bytes(10, 10, None) == 8  # floor of 64 bits
    assert rr22_psi.value_bytes(100, 100, 128) == 16
    with pytest.raises(ConfigError, match="at least 80"):
        rr22_psi.value_bytes(10**6, 10**6, 79)


def test_match_is_exact_when_low_words_collide() -> None:
    theirs = np.array([[1, 5], [1, 3], [2, 2], [1, 4], [0, 0]], dtype=np.uint64)
    own = np.array([[1, 4], [9, 9], [1, 6], [0, 0], [1, 3]], dtype=np.uint64)
    hits, pos = rr22_psi.match(own, theirs)  # three low words 1: the sorted path
    assert hits.tolist() == [4, 0, 3]  # in the order of theirs: (1,3), (1,4), (0,0)
    assert pos.tolist() == [1, 3, 4]
    none, _ = rr22_psi.match(own, theirs[:0])
    assert none.tolist() == []
    unique = theirs[[0, 2, 4]]  # distinct low words: the hash-join path
    hits, pos = rr22_psi.match(own, unique)
    assert hits.tolist() == [3] and pos.tolist() == [2]  # (1,4), (1,6) differ from (1,5)


# -- the job step ------------------------------------------------------------------------------


def test_job_step_with_protocol_rr22(tmp_path: Path) -> None:
    common = [f"cust-{i:04d}" for i in range(90)]
    write_table(tmp_path / "bank.csv", [*common, "b1", "b2", *common[:4]], label=True, seed=5)
    write_table(tmp_path / "partner.csv", ["p1", *reversed(common), "p2"], label=False, seed=6)
    job = write_job(tmp_path, [{"psi": {"protocol": "rr22"}}])
    res = run_job(load_job(job), tmp_path / "out", RunOptions(timeout=60))
    assert res.ok, res.error
    got = {
        p: pd.read_csv(tmp_path / "out" / p / "psi.csv", dtype={"id": str}) for p in (BANK, PARTNER)
    }
    assert sorted(got[BANK]["id"]) == sorted(common)
    assert list(got[BANK]["id"]) == list(got[PARTNER]["id"])  # aligned row for row
    assert res.report["steps"][0]["outputs"]["intersection_size"] == 90


def test_job_step_rejects_rr22_with_interconnect(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"steps\[0\]\.psi\.protocol"):
        load_job(write_job(tmp_path, [{"psi": {"protocol": "rr22", "interconnect": True}}]))


@pytest.mark.slow
def test_1e3_against_1e6_ids() -> None:
    a, b = overlapping_sets(1000, 1_000_000, 700, seed=36)
    check_both(psi_pair(a, b), a, b)


def test_id_chunks_give_the_list_result() -> None:
    """IdChunks stream (small chunks, repeats across chunks): same indices as a list."""
    a, b = overlapping_sets(400, 300, 90, seed=35)
    a = a + a[::7]  # repeats, in later chunks than their first occurrence
    p = PsiParams(result_to=(BANK, PARTNER), protocol=Protocol.RR22)

    def chunked(ids: list[str]) -> IdChunks:
        return IdChunks(ids[lo : lo + 37] for lo in range(0, len(ids), 37))

    want = run_parties({BANK: lambda s: run_psi(s, a, p), PARTNER: lambda s: run_psi(s, b, p)})
    got = run_parties(
        {BANK: lambda s: run_psi(s, chunked(a), p), PARTNER: lambda s: run_psi(s, chunked(b), p)}
    )
    check_both(got, a, b)
    for party in (BANK, PARTNER):
        assert sorted(got[party].indices.tolist()) == sorted(want[party].indices.tolist())
        assert got[party].n_input == want[party].n_input
    bad: list[object] = ["x"] * 40 + [None]  # a null in the second chunk: its input position
    with pytest.raises(ConfigError, match="position 40 is null"):
        run_parties(
            {
                BANK: lambda s: run_psi(s, chunked(bad), p),  # type: ignore[arg-type]
                PARTNER: lambda s: run_psi(s, b, p),
            }
        )


# -- buckets (protocol version 3) -------------------------------------------------------------


def _plan_of(n: int, m: int) -> tuple[int, int, int]:
    """(B, the receiver's bound, the sender's bound) for n and m distinct ids."""
    b = rr22_psi.buckets.bucket_count(n, m, 40, rr22_psi.BUCKET_TARGET)
    return b, rr22_psi.buckets.bound(n, b, 40), rr22_psi.buckets.bound(m, b, 40)


@pytest.mark.parametrize(("n", "m"), [(3000, 2000), (300, 2500), (2500, 40), (1, 900)])
def test_small_buckets_give_the_set_result(monkeypatch: pytest.MonkeyPatch, n: int, m: int) -> None:
    """B > 1 at small n (a small bucket target), with repeats and unequal sizes."""
    monkeypatch.setattr(rr22_psi, "BUCKET_TARGET", 200)
    a, b = overlapping_sets(n, m, min(n, m) // 3, seed=37)
    a, b = a + a[::5], b + b[::3]
    buckets, _, bound_m = _plan_of(len(set(a)), len(set(b)))
    assert buckets > 1 and bound_m < len(set(b))
    rec = Recorder()
    out = psi_pair(a, b, tap=rec)
    check_both(out, a, b)
    for res, mine, theirs in ((out[BANK], a, b), (out[PARTNER], b, a)):
        assert res.n_input == len(mine) and res.peer_n_distinct == len(set(theirs))
    assert len(_frames_by_tag(rec, rr22_psi.Tag.OKVS)) == buckets


def _frames_by_tag(rec: Recorder, tag: str) -> list[bytes]:
    return [f.payload for f in rec.frames if f"/{tag}:" in f.key]


def test_bucket_counts_never_reach_the_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs with the same n, m and intersection size but different ids per bucket
    send the same frames with the same sizes; every bucket's VALUES decode to the padded
    count; nothing raw crosses."""
    monkeypatch.setattr(rr22_psi, "BUCKET_TARGET", 200)  # B = 4
    counts: list[list[int]] = []  # the real ids per bucket, as each party found them
    starts = rr22_psi._bucket_starts

    def spy(grouped: object, plan: object, bound: int) -> np.ndarray:
        out = starts(grouped, plan, bound)  # type: ignore[arg-type]
        counts.append(np.diff(out).tolist())
        return out

    monkeypatch.setattr(rr22_psi, "_bucket_starts", spy)
    recs = []
    for seed in (38, 39):
        a, b = overlapping_sets(400, 300, 100, seed=seed)
        rec = Recorder()
        check_both(psi_pair(a, b, tap=rec), a, b)
        recs.append(rec)
        if seed == 38:
            forms = [p for x in a + b for p in plain_forms(x)]
            assert_no_leak(rec.frames, {"ids": a + b, "hashed ids": forms})
    buckets, _, bound_m = _plan_of(400, 300)
    assert buckets > 1 and len(counts) == 4
    assert sorted(counts[:2]) != sorted(counts[2:])  # the counts differed: the check can fail
    width = rr22_psi.value_bytes(400, 300, None)
    for rec in recs:
        values = [codec.decode(p) for p in _frames_by_tag(rec, rr22_psi.Tag.VALUES)]
        assert len(values) == buckets  # one frame per bucket here (bound_m < a batch)
        assert all(isinstance(v, bytes) and len(v) == bound_m * width for v in values)
    # RESULT (to a party that learns the intersection) holds each bucket's matches: the
    # only frames whose sizes may differ
    result = f"/{rr22_psi.Tag.RESULT}:"
    shapes = [
        sorted((f.key, len(f.payload)) for f in rec.frames if result not in f.key) for rec in recs
    ]
    assert shapes[0] == shapes[1]
    assert all(len(_frames_by_tag(rec, rr22_psi.Tag.RESULT)) == buckets for rec in recs)


def test_a_bucket_over_its_bound_is_a_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rr22_psi, "BUCKET_TARGET", 100)
    monkeypatch.setattr(rr22_psi.buckets, "bound", lambda n, b, s: max(n // b // 2, 1))
    a, b = overlapping_sets(600, 500, 100, seed=40)
    with pytest.raises(ProtocolError, match="more than its bound"):
        psi_pair(a, b)


def test_sender_maps_result_positions_to_its_ids() -> None:
    wire = np.array([1, 5, 9, 12], dtype=np.int32)  # ascending wire positions of real ids
    order = np.array([10, 20, 30, 40], dtype=np.int32)  # their input positions
    got = rr22_psi.buckets.learned(np.array([1, 9, 12]), wire, order)
    assert got.tolist() == [10, 30, 40] and got.dtype == order.dtype
    # repeats kept once, a padding position (4: a false match) dropped, in wire order
    assert rr22_psi.buckets.learned(np.array([9, 1, 1, 4]), wire, order).tolist() == [10, 30]
    assert rr22_psi.buckets.learned(np.zeros(0, dtype=np.int64), wire, order).tolist() == []
