"""KKRT-PSI: correctness against Python sets, result routing, privacy of the wire,
option checks, and the job step with ``protocol: kkrt``."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from pathlib import Path

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
from veil.errors import ConfigError, ProtocolError
from veil.jobs import RunOptions, load_job, run_job
from veil.net import Session, run_parties
from veil.protocols.psi import Protocol, PsiParams, PsiResult, run_psi
from veil.protocols.psi import kkrt as kkrt_psi


def psi_pair(bank: Sequence[str], partner: Sequence[str], **kw: object) -> dict[str, PsiResult]:
    return _psi_pair(bank, partner, protocol=Protocol.KKRT, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_duplicates_unicode_and_both_results(transport: str) -> None:
    bank = ["张三", "alice", "", "bob", "alice", "Ωmega", "dup", "dup", "zoë", "only-bank"]
    partner = ["zoë", "dup", "bob", "张三", "", "carol", "dup", "Ωmega ", "bob"]
    out = psi_pair(bank, partner, transport=transport)
    check_both(out, bank, partner)
    assert out[BANK].size == 5  # 张三, "", bob, dup, zoë


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_random_sets_with_overlap(transport: str) -> None:
    a, b = overlapping_sets(3000, 2000, 700, seed=11)
    check_both(psi_pair(a, b, transport=transport), a, b)


@pytest.mark.parametrize("result_to", [(BANK,), (PARTNER,)])
def test_result_to_one_party(result_to: tuple[str, ...]) -> None:
    a, b = overlapping_sets(300, 500, 120, seed=12)
    out = psi_pair(a, b, result_to=result_to)
    me, other = result_to[0], ({BANK, PARTNER} - set(result_to)).pop()
    mine, theirs = (a, b) if me == BANK else (b, a)
    check_receiver(out[me], mine, theirs)
    assert out[other].indices is None and out[other].size is None
    assert out[other].peer_n_distinct == len(set(mine))


def test_role_functions_directly() -> None:
    a, b = overlapping_sets(100, 80, 30, seed=13)
    p = PsiParams(result_to=(PARTNER,), protocol=Protocol.KKRT)
    out = run_parties(
        {
            BANK: lambda s: kkrt_psi.run_oprf_sender(s, a, p),
            PARTNER: lambda s: kkrt_psi.run_oprf_receiver(s, b, p),
        }
    )
    check_receiver(out[PARTNER], b, a)
    with pytest.raises(ConfigError, match="result_to"):
        run_parties(
            {
                BANK: lambda s: kkrt_psi.run_oprf_receiver(s, a, p),
                PARTNER: lambda s: kkrt_psi.run_oprf_receiver(s, b, p),
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
    rng = random.Random(14)
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
        ({"protocol": "ot"}, "protocol"),
        ({"result_to": ("bank", "carol")}, "carol"),
        ({"truncate_bits": 41}, "below log2"),
    ],
)
def test_bad_params_are_rejected(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _psi_pair(["a", "b", "c"], ["b"], **({"protocol": Protocol.KKRT} | kw))  # type: ignore[arg-type]


def test_parties_must_run_the_same_protocol() -> None:
    pe = PsiParams(result_to=(BANK, PARTNER))
    pk = PsiParams(result_to=(BANK, PARTNER), protocol=Protocol.KKRT)
    with pytest.raises(ConfigError, match="protocol"):
        run_parties(
            {BANK: lambda s: run_psi(s, ["a"], pe), PARTNER: lambda s: run_psi(s, ["a"], pk)},
            timeout=20,
        )


def test_malformed_ot_chunk_is_a_protocol_error() -> None:
    p = PsiParams(result_to=(PARTNER,), protocol=Protocol.KKRT)

    def liar(s: Session) -> None:
        s.send(BANK, kkrt_psi.Tag.HELLO, s.recv(BANK, kkrt_psi.Tag.HELLO) | {"n": 1})
        s.send(BANK, kkrt_psi.Tag.SETUP, {"seed": bytes(16), "bins": 100, "point": bytes(32)})
        s.recv(BANK, "never", timeout=5)

    with pytest.raises(ProtocolError, match="bins"):
        run_parties({BANK: lambda s: kkrt_psi.run_oprf_sender(s, ["a"], p), PARTNER: liar})


def test_value_width() -> None:
    assert kkrt_psi.value_bytes(10**6, 10**6, None) == 11  # 40 + log2(3e12) = 81.4 bits
    assert kkrt_psi.value_bytes(10, 10, None) == 8  # floor of 64 bits
    assert kkrt_psi.value_bytes(100, 100, 128) == 16
    with pytest.raises(ConfigError, match="at least 82"):
        kkrt_psi.value_bytes(10**6, 10**6, 81)


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_1e5_sets_with_duplicates(transport: str) -> None:
    a, b = overlapping_sets(100_000, 100_000, 37_000, seed=15)
    a += a[:500]
    check_both(psi_pair(a, b, transport=transport), a, b)


# -- the job step ------------------------------------------------------------------------


def test_job_step_with_protocol_kkrt(tmp_path: Path) -> None:
    common = [f"cust-{i:04d}" for i in range(90)]
    write_table(tmp_path / "bank.csv", [*common, "b1", "b2", *common[:4]], label=True, seed=3)
    write_table(tmp_path / "partner.csv", ["p1", *reversed(common), "p2"], label=False, seed=4)
    job = write_job(tmp_path, [{"psi": {"protocol": "kkrt"}}])
    res = run_job(load_job(job), tmp_path / "out", RunOptions(timeout=60))
    assert res.ok, res.error
    got = {
        p: pd.read_csv(tmp_path / "out" / p / "psi.csv", dtype={"id": str}) for p in (BANK, PARTNER)
    }
    assert sorted(got[BANK]["id"]) == sorted(common)
    assert list(got[BANK]["id"]) == list(got[PARTNER]["id"])  # aligned row for row
    assert res.report["steps"][0]["outputs"]["intersection_size"] == 90


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"protocol": "psz"}, "steps[0].psi.protocol: 'psz' is not a PSI protocol"),
        ({"protocol": "kkrt", "interconnect": True}, "steps[0].psi.protocol"),
    ],
)
def test_job_step_rejects_bad_protocol(
    tmp_path: Path, params: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match.replace("[", r"\[").replace("]", r"\]")):
        load_job(write_job(tmp_path, [{"psi": params}]))
