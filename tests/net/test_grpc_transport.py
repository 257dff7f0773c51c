"""The mutual-TLS gRPC transport: chunking, refusals, dead peers, aborts, processes."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.net.grpc_peer import echo_party
from veil.errors import ConfigError, NetworkError, PeerAborted, PeerTimeout
from veil.net.certs import TlsFiles, throwaway_federation
from veil.net.grpc_transport import (
    PUSH_METHOD,
    GrpcConfig,
    GrpcTransport,
    free_port,
    loopback_configs,
    loopback_transports,
    send_abort,
)
from veil.net.proto import link_pb2
from veil.net.session import Session

NAMES = ["alice", "bob"]


@pytest.fixture(scope="module")
def feds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, TlsFiles]]:
    """Two federations with the same party names: 'good' and an unrelated 'evil' one."""
    root = tmp_path_factory.mktemp("feds")
    return {k: throwaway_federation(NAMES, root / k) for k in ("good", "evil")}


@pytest.fixture
def addrs() -> list[str]:
    return [f"127.0.0.1:{free_port()}" for _ in NAMES]


def _mk(rank: int, tls: TlsFiles, addrs: list[str], **kw: float) -> GrpcTransport:
    cfg = GrpcConfig(rank=rank, names=NAMES, addresses=addrs, tls=tls, **kw)  # type: ignore[arg-type]
    return GrpcTransport(cfg)


@pytest.fixture
def pair(feds: dict[str, dict[str, TlsFiles]], addrs: list[str]) -> Iterator[list[GrpcTransport]]:
    ts = [_mk(r, feds["good"][n], addrs, connect_timeout=3) for r, n in enumerate(NAMES)]
    yield ts
    for t in ts:
        t.close()


def test_large_message_is_chunked_and_reassembled() -> None:
    payload = os.urandom(30 << 20)
    with loopback_transports(NAMES, chunk_size=1 << 20) as ts:
        a, b = ts
        assert isinstance(b, GrpcTransport)
        a.send(1, "root/big:P2P-1:0->1", payload)
        assert b.recv(0, "root/big:P2P-1:0->1", 30) == payload
        assert b.receiver.frames == 30  # 30 CHUNKED pushes, none over 1 MiB
        assert b.receiver.largest_frame == 1 << 20
        assert a.stats.totals().bytes_sent == 30 << 20


def test_chunks_in_any_order_from_a_raw_interconnection_client(
    pair: list[GrpcTransport], feds: dict[str, dict[str, TlsFiles]], addrs: list[str]
) -> None:
    tls = feds["good"]["alice"]
    creds = grpc.ssl_channel_credentials(
        tls.ca_cert.read_bytes(), tls.key.read_bytes(), tls.cert.read_bytes()
    )
    value = os.urandom(10_000)
    with grpc.secure_channel(
        addrs[1], creds, options=[("grpc.ssl_target_name_override", "bob")]
    ) as ch:
        push = ch.unary_unary(
            PUSH_METHOD,
            request_serializer=link_pb2.PushRequest.SerializeToString,
            response_deserializer=link_pb2.PushResponse.FromString,
        )
        for off in [6000, 0, 9000, 3000, 0]:  # out of order, one duplicate
            end = min(off + 3000, len(value))
            resp = push(
                link_pb2.PushRequest(
                    sender_rank=0,
                    key="root:P2P-1:0->1",
                    value=value[off:end],
                    trans_type=link_pb2.CHUNKED,
                    chunk_info=link_pb2.ChunkInfo(message_length=len(value), chunk_offset=off),
                ),
                timeout=5,
            )
            assert resp.header.error_code == 0
        assert pair[1].recv(0, "root:P2P-1:0->1", 5) == value
        late = link_pb2.PushRequest(  # a retried chunk after the value was delivered
            sender_rank=0,
            key="root:P2P-1:0->1",
            value=value[:3000],
            trans_type=link_pb2.CHUNKED,
            chunk_info=link_pb2.ChunkInfo(message_length=len(value), chunk_offset=0),
        )
        assert push(late, timeout=5).header.error_code == 0
        assert pair[1].receiver.pending == 0  # ignored, not the start of a new value
        for i, (off, n) in enumerate([(0, 3000), (2000, 3000), (5000, 5000)]):  # overlap
            bad = link_pb2.PushRequest(
                sender_rank=0,
                key="root:P2P-2:0->1",
                value=value[off : off + n],
                trans_type=link_pb2.CHUNKED,
                chunk_info=link_pb2.ChunkInfo(message_length=len(value), chunk_offset=off),
            )
            if i < 2:
                push(bad, timeout=5)
            else:
                with pytest.raises(grpc.RpcError, match="overlap") as err:
                    push(bad, timeout=5)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as err:  # a key that claims another direction
            push(link_pb2.PushRequest(sender_rank=0, key="root:P2P-1:1->0", value=b""), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_out_of_order_keys_and_concurrent_senders(pair: list[GrpcTransport]) -> None:
    a, b = pair
    keys = [f"root/t:P2P-{i}:0->1" for i in range(1, 41)]

    def send_some(ks: list[str]) -> None:
        for k in ks:
            a.send(1, k, k.encode())

    threads = [threading.Thread(target=send_some, args=(keys[i::4],)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for k in reversed(keys):
        assert b.recv(0, k, 5) == k.encode()
    assert a.stats.peers[1].messages_sent == 40
    assert b.stats.peers[0].bytes_received == sum(len(k) for k in keys)


def test_cert_from_another_ca_is_refused_before_data_flows(
    feds: dict[str, dict[str, TlsFiles]], addrs: list[str]
) -> None:
    evil = _mk(0, feds["evil"]["alice"], addrs, connect_timeout=30)
    bob = _mk(1, feds["good"]["bob"], addrs, connect_timeout=30)
    try:
        t0 = time.monotonic()
        with pytest.raises(NetworkError, match=r"refused party bob at .*not issued by the federat"):
            evil.send(1, "root:P2P-1:0->1", b"secret")
        with pytest.raises(NetworkError, match=r"refused party alice at .*not issued by the fede"):
            bob.send(0, "root:P2P-1:1->0", b"secret")
        assert time.monotonic() - t0 < 10  # a handshake failure is final, not retried
        with pytest.raises(PeerTimeout):
            bob.recv(0, "root:P2P-1:0->1", 0.2)
    finally:
        evil.close()
        bob.close()


def test_the_refused_party_is_told_why_not_connection_refused(
    feds: dict[str, dict[str, TlsFiles]], addrs: list[str]
) -> None:
    """Alice trusts the right CA but presents a certificate of another one: bob closes
    her handshakes; she says she was refused by bob, and why, within a second."""
    good, evil = feds["good"]["alice"], feds["evil"]["alice"]
    alice = _mk(0, TlsFiles(good.ca_cert, evil.cert, evil.key), addrs, connect_timeout=30)
    bob = _mk(1, feds["good"]["bob"], addrs, connect_timeout=30)
    try:
        t0 = time.monotonic()
        with pytest.raises(
            NetworkError, match=r"^refused by bob: certificate not issued by the federation CA"
        ):
            alice.connect(30)
        assert time.monotonic() - t0 < 3
        with pytest.raises(NetworkError, match=r"refused party alice at .*not issued by the fed"):
            bob.connect(30)  # and bob refuses her server's certificate at once
        assert time.monotonic() - t0 < 5
    finally:
        alice.close()
        bob.close()


def test_cert_with_the_wrong_party_name_is_refused(
    feds: dict[str, dict[str, TlsFiles]], addrs: list[str]
) -> None:
    # "alice" holds bob's certificate: same CA, wrong name.
    fake = _mk(0, feds["good"]["bob"], addrs, connect_timeout=30)
    bob = _mk(1, feds["good"]["bob"], addrs, connect_timeout=30)
    try:
        t0 = time.monotonic()
        with pytest.raises(
            NetworkError, match=r"^refused by bob: certificate issued to 'bob', not 'alice'"
        ):
            fake.send(1, "root:P2P-1:0->1", b"secret")
        # bob will not talk to it either: the server's name is not 'alice'
        with pytest.raises(NetworkError, match=r"refused party alice .*not issued to .*'alice'"):
            bob.send(0, "root:P2P-1:1->0", b"secret")
        assert time.monotonic() - t0 < 10
        with pytest.raises(PeerTimeout):
            bob.recv(0, "root:P2P-1:0->1", 0.2)
    finally:
        fake.close()
        bob.close()


def test_connect_is_a_barrier_and_names_the_missing_party(
    feds: dict[str, dict[str, TlsFiles]], addrs: list[str]
) -> None:
    a = _mk(0, feds["good"]["alice"], addrs, connect_timeout=10)
    late: list[GrpcTransport] = []

    def bob_starts_late() -> None:
        time.sleep(0.5)
        late.append(_mk(1, feds["good"]["bob"], addrs))
        late[0].connect(10)

    th = threading.Thread(target=bob_starts_late)
    try:
        t0 = time.monotonic()
        th.start()
        a.connect(10)  # returns once bob is up and has said hello
        assert time.monotonic() - t0 >= 0.4
        th.join(10)
        assert late and not th.is_alive()
        late[0].close()
        with pytest.raises(NetworkError, match="party bob"):  # bob is gone now
            a.connect(0.5)
    finally:
        a.close()
        for t in late:
            t.close()


def test_abort_reaches_the_peer(pair: list[GrpcTransport]) -> None:
    a, b = pair
    a.abort("out of memory")
    with pytest.raises(PeerAborted, match="out of memory"):
        b.recv(0, "root:P2P-1:0->1", 5)


def test_dead_peer_fails_sender_and_receiver_within_timeouts(pair: list[GrpcTransport]) -> None:
    a, b = pair
    a.send(1, "root:P2P-1:0->1", b"ok")
    assert b.recv(0, "root:P2P-1:0->1", 5) == b"ok"
    b.close()  # bob is gone
    t0 = time.monotonic()
    with pytest.raises(NetworkError, match=r"party bob at 127\.0\.0\.1"):
        a.send(1, "root:P2P-2:0->1", b"anyone?")
    with pytest.raises(PeerTimeout, match="bob"):
        a.recv(1, "root:P2P-1:1->0", 0.5)
    assert time.monotonic() - t0 < 3 + 0.5 + 2


def test_bad_config_is_refused(feds: dict[str, dict[str, TlsFiles]], addrs: list[str]) -> None:
    tls = feds["good"]["alice"]
    with pytest.raises(ConfigError, match="tls"):
        GrpcTransport(GrpcConfig(rank=0, names=NAMES, addresses=addrs, tls=None))
    with pytest.raises(ConfigError, match="insecure"):
        GrpcTransport(GrpcConfig(rank=0, names=NAMES, addresses=addrs, tls=tls, insecure=True))
    with pytest.raises(ConfigError, match="rank"):
        GrpcTransport(GrpcConfig(rank=2, names=NAMES, addresses=addrs, tls=tls))
    with pytest.raises(ConfigError, match="addresses"):
        GrpcTransport(GrpcConfig(rank=0, names=NAMES, addresses=addrs[:1], tls=tls))
    with pytest.raises(ConfigError, match=r"addresses\[1\]"):
        GrpcTransport(GrpcConfig(rank=0, names=NAMES, addresses=[addrs[0], "bob"], tls=tls))
    with pytest.raises(ConfigError, match="listen"):
        GrpcTransport(GrpcConfig(rank=0, names=NAMES, addresses=addrs, tls=tls, listen=":70000"))
    with pytest.raises(ConfigError, match=r"names\[1\]"):
        GrpcTransport(GrpcConfig(rank=0, names=["a", "b c"], addresses=addrs, tls=tls))
    missing = TlsFiles(tls.ca_cert, Path("/nonexistent.crt"), tls.key)
    with pytest.raises(ConfigError, match=r"tls\.cert"):
        GrpcTransport(GrpcConfig(rank=0, names=NAMES, addresses=addrs, tls=missing))


def test_each_party_in_its_own_process(tmp_path: Path) -> None:
    cfgs = loopback_configs(NAMES, tmp_path, connect_timeout=20)
    peer = mp.get_context("spawn").Process(target=echo_party, args=(cfgs[1],))
    peer.start()
    a = GrpcTransport(cfgs[0])
    try:
        s = Session(a, NAMES, "alice", timeout=20)
        for i in range(3):
            s.send("bob", "ask", np.arange(i + 1))
            assert s.recv("bob", "answer").tolist() == [2 * j for j in range(i + 1)]
        s.send("bob", "ask", None)
        peer.join(20)
        assert peer.exitcode == 0
    finally:
        a.close()
        if peer.is_alive():
            peer.kill()


def test_crashed_peer_process_makes_the_other_fail_in_time(tmp_path: Path) -> None:
    cfgs = loopback_configs(NAMES, tmp_path, connect_timeout=20)
    peer = mp.get_context("spawn").Process(target=echo_party, args=(cfgs[1], 2))
    peer.start()
    a = GrpcTransport(cfgs[0])
    try:
        s = Session(a, NAMES, "alice", timeout=2)
        s.send("bob", "ask", 1)
        assert s.recv("bob", "answer") == 2
        s.send("bob", "ask", 2)  # bob dies on this one
        t0 = time.monotonic()
        with pytest.raises(PeerTimeout, match="bob"):
            s.recv("bob", "answer")
        assert time.monotonic() - t0 < 4
        peer.join(10)
        assert peer.exitcode == 3
    finally:
        a.close()
        if peer.is_alive():
            peer.kill()


def test_listen_address_and_dns_names(feds: dict[str, dict[str, TlsFiles]]) -> None:
    """Bind on all interfaces, reach each other as 'localhost' (a SAN of the certs)."""
    ports = [free_port(), free_port()]
    addrs = [f"localhost:{p}" for p in ports]
    ts = [
        GrpcTransport(
            GrpcConfig(
                rank=r,
                names=NAMES,
                addresses=addrs,
                tls=feds["good"][n],
                listen=f"0.0.0.0:{ports[r]}",
                connect_timeout=5,
            )
        )
        for r, n in enumerate(NAMES)
    ]
    try:
        ts[1].send(0, "root:P2P-1:1->0", b"hi")
        assert ts[0].recv(1, "root:P2P-1:1->0", 5) == b"hi"
    finally:
        for t in ts:
            t.close()


def test_port_in_use_and_close_releases_threads(
    pair: list[GrpcTransport], feds: dict[str, dict[str, TlsFiles]], addrs: list[str]
) -> None:
    with pytest.raises(NetworkError, match=r"alice cannot listen on 127\.0\.0\.1:\d+"):
        _mk(0, feds["good"]["alice"], addrs)  # pair[0] already listens there
    before = threading.active_count()
    with loopback_transports(NAMES) as (a, b):
        a.send(1, "k", b"x")
        assert b.recv(0, "k", 5) == b"x"
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before


def test_abort_names_the_step_and_stops_sends_too(pair: list[GrpcTransport]) -> None:
    a, b = pair
    a.abort("ValueError: boom", step="2 'hetero_lr'")
    b.mailbox.abort(0, "a later echo")  # the first cause is kept
    t0 = time.monotonic()
    with pytest.raises(PeerAborted, match=r"^alice failed in step 2 'hetero_lr': ValueError: boom"):
        b.recv(0, "root:P2P-1:0->1", 30)
    with pytest.raises(PeerAborted, match="alice failed in step 2"):
        b.send(0, "root:P2P-1:1->0", b"anyone?")  # nothing more goes to a party that failed
    assert time.monotonic() - t0 < 1


def test_send_abort_without_a_server_reaches_the_peers(
    pair: list[GrpcTransport], feds: dict[str, dict[str, TlsFiles]], addrs: list[str]
) -> None:
    """What veil run does when its party process died: tell the peers, as that party."""
    a, b = pair
    a.close()  # alice's process is gone; her supervisor speaks for her
    cfg = GrpcConfig(rank=0, names=NAMES, addresses=addrs, tls=feds["good"]["alice"])
    send_abort(cfg, "crashed (killed by signal 9, SIGKILL)", step="start")
    with pytest.raises(PeerAborted, match=r"^alice failed before the first step: crashed \(killed"):
        b.recv(0, "connect_0", 5)


def test_a_peer_that_dies_is_found_dead_within_seconds_a_slow_one_is_waited_for(
    pair: list[GrpcTransport],
) -> None:
    a, b = pair
    th = threading.Thread(target=b.connect, args=(5,))
    th.start()
    a.connect(5)
    th.join()
    for t in pair:
        t.start_heartbeats(every=0.1, gone_after=0.5)
    time.sleep(0.5)
    assert a.mailbox.heard(1) is not None and a.mailbox.heard(1) < 0.5  # type: ignore[operator]
    with pytest.raises(PeerTimeout):  # slow (alive, heartbeating): waits out its timeout
        a.recv(1, "root:P2P-1:1->0", 1.5)
    b.close()  # bob's process stops: its port refuses connections
    t0 = time.monotonic()
    with pytest.raises(NetworkError, match=r"^bob is gone: its address .* refuses connections"):
        a.recv(1, "root:P2P-1:1->0", 60)
    assert time.monotonic() - t0 < 3


def test_a_silent_peer_is_dead_after_its_heartbeats_stop() -> None:
    from veil.net.transport import Mailbox

    box = Mailbox(dead_after=0.5)
    box.heartbeat(1)  # heard once: a Veil peer that heartbeats
    t0 = time.monotonic()
    with pytest.raises(NetworkError, match=r"^bob stopped responding: no heartbeat for 1 s"):
        box.take("k", 1, 60, "bob")
    assert 0.5 <= time.monotonic() - t0 < 2
    with pytest.raises(PeerTimeout):  # a peer never heard (no heartbeats) is waited for
        box.take("k", 2, 0.3, "carol")


def test_connect_shows_whom_it_waits_for(
    feds: dict[str, dict[str, TlsFiles]], addrs: list[str]
) -> None:
    a = _mk(0, feds["good"]["alice"], addrs, connect_timeout=10)
    seen: list[object] = []

    def watch() -> None:
        time.sleep(0.6)
        seen.extend(a.mailbox.waiting())

    th = threading.Thread(target=watch)
    th.start()
    try:
        with pytest.raises(NetworkError, match=r"party bob .*gave up after 1 s"):
            a.connect(1.0)
    finally:
        th.join()
        a.close()
    assert [(w.peer, w.what) for w in seen] == [(1, "connecting")]  # type: ignore[attr-defined]
    assert a.mailbox.waiting() == []


def test_loopback_keys_are_gone_once_the_transports_are_up() -> None:
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("veil-tls-*"))
    with loopback_transports(NAMES) as (a, b):
        assert set(Path(tempfile.gettempdir()).glob("veil-tls-*")) <= before
        a.send(1, "k", b"x")
        assert b.recv(0, "k", 5) == b"x"
