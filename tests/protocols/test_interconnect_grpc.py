"""Interconnection PSI over the gRPC interconnection link: CHUNKED values, mutual TLS."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.protocols.ic_certs import make_pki
from tests.protocols.ic_helpers import check_result, free_port, make_sets, run_pair
from veil.errors import NetworkError
from veil.protocols.interconnect import IcPsiOptions
from veil.protocols.interconnect.ecdh import BodyOptions
from veil.protocols.interconnect.wire import IcGrpcTransport, LinkConfig, TlsFiles


@contextmanager
def link_pair(
    tls: Sequence[TlsFiles | None], max_payload: int = 1 << 20, connect_timeout: float = 20
) -> Iterator[list[IcGrpcTransport]]:
    addrs = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    ts = [
        IcGrpcTransport(
            LinkConfig(r, addrs[r], addrs, tls[r], max_payload, connect_timeout, "localhost")
        )
        for r in (0, 1)
    ]
    try:
        yield ts
    finally:
        for t in ts:
            t.close()


def opts(rank: int, **kw: object) -> IcPsiOptions:
    base: dict[str, object] = {"timeout": 20, "connect_timeout": 20, "fin_timeout": 5}
    return IcPsiOptions(rank=rank, **{**base, **kw})  # type: ignore[arg-type]


def test_chunked_values_over_plaintext_grpc() -> None:
    a, b = make_sets(700, 500, 200)
    with link_pair([None, None], max_payload=1000) as ts:
        body = BodyOptions(batch_size=256)  # 8 KiB enc batches -> 9 chunks each
        res = run_pair(ts, [a, b], [opts(0, body=body), opts(1, body=body)])
        assert ts[0].chunks_received > 10 and ts[1].chunks_received > 10
    check_result(res[0], a, b)
    check_result(res[1], b, a)


def test_mutual_tls(tmp_path: Path) -> None:
    a, b = make_sets(50, 60, 20)
    with link_pair(make_pki(tmp_path, ["p0", "p1"])) as ts:
        res = run_pair(ts, [a, b], [opts(0, result_to_rank=1), opts(1, result_to_rank=1)])
    assert res[0].indices is None
    check_result(res[1], b, a)


def test_tls_with_an_untrusted_peer_fails(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    good = make_pki(tmp_path, ["p0"])[0]
    rogue = make_pki(tmp_path / "x", ["p1"], ca_name="rogue-ca")[0]
    with link_pair([good, rogue], connect_timeout=2) as ts:
        res = run_pair(ts, [["a"], ["a"]], [opts(0, connect_timeout=3), opts(1, connect_timeout=3)])
    assert all(isinstance(r, NetworkError) for r in res), res


def test_missing_cert_file_names_the_flag(tmp_path: Path) -> None:
    from veil.errors import ConfigError

    bad = TlsFiles(tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem")
    with pytest.raises(ConfigError, match="--ca"):
        IcGrpcTransport(LinkConfig(0, "127.0.0.1:0", ["127.0.0.1:0", "127.0.0.1:1"], bad))
