"""Interconnection PSI over Veil's gRPC transport (the standard Push wire): CHUNKED
values in plaintext, and mutual TLS."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.protocols.ic_helpers import (
    check_result,
    decode_ic_frame,
    free_port,
    make_sets,
    run_pair,
    same_order,
)
from tests.wire_check import Recorder, assert_no_leak
from veil.net.grpc_transport import GrpcConfig, GrpcTransport, loopback_transports
from veil.net.transport import Transport
from veil.protocols.interconnect import IcPsiOptions
from veil.protocols.interconnect.ecdh import BodyOptions

NAMES = ["party0", "party1"]


@contextmanager
def plaintext_pair(chunk_size: int, rec: Recorder) -> Iterator[list[Transport]]:
    addrs = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    ts: list[Transport] = []
    try:
        for r in (0, 1):
            cfg = GrpcConfig(r, NAMES, addrs, None, insecure=True, chunk_size=chunk_size)
            ts.append(GrpcTransport(cfg, tap=rec))
        yield ts
    finally:
        for t in ts:
            t.close()


def opts(rank: int, **kw: object) -> IcPsiOptions:
    base: dict[str, object] = {"timeout": 20, "connect_timeout": 20, "fin_timeout": 5}
    return IcPsiOptions(rank=rank, **{**base, **kw})  # type: ignore[arg-type]


def test_chunked_values_over_plaintext_grpc() -> None:
    a, b = make_sets(700, 500, 200)
    rec = Recorder()
    with plaintext_pair(1024, rec) as ts:
        body = BodyOptions(batch_size=256)  # 8 KiB enc batches -> 9 chunks each
        res = run_pair(ts, [a, b], [opts(0, body=body), opts(1, body=body)])
    check_result(res[0], a, b)
    check_result(res[1], b, a)
    same_order(res[0], res[1], a, b)
    assert sum(len(f.payload) > 1024 for f in rec.frames) >= 4  # these went CHUNKED
    assert_no_leak(rec.frames, {"ids": sorted({*a, *b} - {""})}, decode=decode_ic_frame)


def test_mutual_tls() -> None:
    a, b = make_sets(50, 60, 20)
    with loopback_transports(NAMES) as ts:
        res = run_pair(ts, [a, b], [opts(0, result_to_rank=1), opts(1, result_to_rank=1)])
    assert res[0].indices is None
    check_result(res[1], b, a)
