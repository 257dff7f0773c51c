"""Veil against SecretFlow's own interconnection ECDH-PSI (spu 0.9.1b0), on the real wire.

Needs ``VEIL_SF_PEER`` (see tests/protocols/sf_peer.py); skipped without it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.protocols.ic_helpers import (
    check_result,
    decode_ic_frame,
    expected_rows,
    free_port,
    make_sets,
)
from tests.sf_peer import read_ids, sf_peer_venv, start_sf
from tests.wire_check import Recorder, assert_no_leak
from veil.net.grpc_transport import GrpcConfig, GrpcTransport
from veil.protocols.interconnect import HandshakeRefused, IcPsiOptions, run_interconnect_psi
from veil.protocols.interconnect.vocab import ErrorCode

pytestmark = pytest.mark.interop


def run_against_sf(
    tmp: Path,
    veil_rank: int,
    veil_ids: Sequence[str],
    sf_ids: Sequence[str],
    rtr: int,
    *,
    sf_args: Sequence[str] = (),
    max_payload: int = 1 << 20,
    tap: Recorder | None = None,
    **veil_opts: object,
) -> tuple[object, int, str, Path]:
    """Run Veil in-process and the SecretFlow peer as a subprocess; return
    (Veil result or exception, peer exit code, peer log, peer output path)."""
    sf_peer_venv()
    addrs = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    sf_rank = 1 - veil_rank
    sf = start_sf(
        tmp, sf_rank, addrs[sf_rank], addrs[veil_rank], sf_ids,
        "--result-to-rank", str(rtr), *sf_args,
    )  # fmt: skip
    names = ["party0", "party1"]
    cfg = GrpcConfig(veil_rank, names, addrs, None, insecure=True, chunk_size=max_payload)
    t = GrpcTransport(cfg, tap=tap)
    try:
        o = IcPsiOptions(
            rank=veil_rank, result_to_rank=rtr, timeout=60, connect_timeout=60,
            fin_timeout=15, **veil_opts,  # type: ignore[arg-type]
        )  # fmt: skip
        res: object = run_interconnect_psi(t, list(veil_ids), o)
    except Exception as e:
        res = e
    finally:
        rc, log = sf.wait()
        t.close()
    return res, rc, log, sf.out


def check_both(
    res: object, rc: int, log: str, out: Path, *, veil_rank: int, rtr: int,
    veil_ids: Sequence[str], sf_ids: Sequence[str],
) -> None:  # fmt: skip
    assert rc == 0, log[-3000:]
    assert not isinstance(res, Exception), res
    if rtr in (-1, veil_rank):
        check_result(res, veil_ids, sf_ids)  # type: ignore[arg-type]
    else:
        assert res.indices is None  # type: ignore[attr-defined]
    assert res.fin_received  # type: ignore[attr-defined]
    if rtr in (-1, 1 - veil_rank):
        want = [sf_ids[i] for i in expected_rows(sf_ids, veil_ids)]
        assert Counter(read_ids(out)) == Counter(want)


@pytest.mark.parametrize("rtr", [-1, 0, 1])
@pytest.mark.parametrize("veil_rank", [0, 1])
def test_against_secretflow(tmp_path: Path, veil_rank: int, rtr: int) -> None:
    a, b = make_sets(3000, 2500, 900, seed=veil_rank * 3 + rtr, tricky=False)
    rec = Recorder()  # what Veil sends to SecretFlow
    res, rc, log, out = run_against_sf(tmp_path, veil_rank, a, b, rtr, tap=rec)
    check_both(res, rc, log, out, veil_rank=veil_rank, rtr=rtr, veil_ids=a, sf_ids=b)
    assert_no_leak(rec.frames, {"ids": sorted({*a, *b})}, decode=decode_ic_frame)


@pytest.mark.parametrize("veil_rank", [0, 1])
def test_single_ids(tmp_path: Path, veil_rank: int) -> None:
    res, rc, log, out = run_against_sf(tmp_path, veil_rank, ["only"], ["only"], -1)
    check_both(res, rc, log, out, veil_rank=veil_rank, rtr=-1, veil_ids=["only"], sf_ids=["only"])


def test_chunked_both_ways(tmp_path: Path) -> None:
    a, b = make_sets(5000, 5000, 2000, seed=7, tricky=False)
    res, rc, log, out = run_against_sf(
        tmp_path, 0, a, b, -1, sf_args=["--http-max-payload-size", "20000"], max_payload=20000
    )
    check_both(res, rc, log, out, veil_rank=0, rtr=-1, veil_ids=a, sf_ids=b)


@pytest.mark.slow
@pytest.mark.parametrize("veil_rank", [0, 1])
def test_fifty_thousand(tmp_path: Path, veil_rank: int) -> None:
    a, b = make_sets(50_000, 40_000, 20_000, seed=11, tricky=False)
    res, rc, log, out = run_against_sf(tmp_path, veil_rank, a, b, -1)
    check_both(res, rc, log, out, veil_rank=veil_rank, rtr=-1, veil_ids=a, sf_ids=b)


@pytest.mark.parametrize(
    ("veil_rank", "sf_args", "veil_kw", "code", "why"),
    [
        (1, ["--curve", "sm2"], {}, ErrorCode.HANDSHAKE_REFUSED, "ec suits"),
        (0, ["--curve", "sm2"], {}, ErrorCode.HANDSHAKE_REFUSED, "ec suits"),
        (1, ["--result-to-rank", "0"], {}, ErrorCode.HANDSHAKE_REFUSED, "result_to_rank"),
        (0, ["--result-to-rank", "1"], {}, ErrorCode.HANDSHAKE_REFUSED, "result_to_rank"),
        (1, [], {"handshake_version": 3}, ErrorCode.HANDSHAKE_REFUSED, "version"),
    ],
)
def test_refused_handshake_fails_fast_on_both_sides(
    tmp_path: Path,
    *,
    veil_rank: int,
    sf_args: list[str],
    veil_kw: dict[str, object],
    code: int,
    why: str,
) -> None:
    t0 = time.monotonic()
    # the peer's --result-to-rank comes last and wins over run_against_sf's -1
    res, rc, log, _ = run_against_sf(
        tmp_path, veil_rank, ["x"], ["x"], -1, sf_args=sf_args, **veil_kw
    )
    assert time.monotonic() - t0 < 30
    assert isinstance(res, HandshakeRefused), res
    assert res.code == code and why in str(res)
    assert rc == 2, log[-2000:]
    assert "refused" in log or "error_code" in log
