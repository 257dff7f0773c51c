"""The gRPC receiver's per-peer limits: a peer that announces a huge value, opens many
half-sent values, floods keys or buffers too many bytes is refused with an error naming
the limit (RESOURCE_EXHAUSTED to the sender, ProtocolError to our waits); normal
traffic, where the protocol takes what arrives, passes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from veil.codec import encode
from veil.crypto import paillier
from veil.crypto.encrypted import EncryptedArray
from veil.errors import ConfigError, NetworkError, ProtocolError
from veil.net.grpc_config import MAX_HELD_BYTES, MAX_MESSAGE_BYTES, MAX_PENDING_MESSAGES
from veil.net.grpc_transport import (
    PUSH_METHOD,
    GrpcConfig,
    GrpcTransport,
    free_port,
    loopback_configs,
)
from veil.net.proto import link_pb2

NAMES = ["alice", "bob"]
Push = Callable[..., Any]


def receiver(**limits: int) -> GrpcTransport:
    """Bob (rank 1), without TLS, with the given receive limits."""
    addrs = [f"127.0.0.1:{free_port()}" for _ in NAMES]
    cfg = GrpcConfig(rank=1, names=NAMES, addresses=addrs, tls=None, insecure=True, **limits)
    return GrpcTransport(cfg)


@pytest.fixture
def bob_and_push(request: pytest.FixtureRequest) -> Iterator[tuple[GrpcTransport, Push]]:
    """Bob with the limits given as the fixture's parameter (else the defaults), and a raw
    client that pushes to him as alice (a peer free to break the rules)."""
    bob = receiver(**getattr(request, "param", {}))
    ch = grpc.insecure_channel(bob.cfg.addresses[1])
    push = ch.unary_unary(
        PUSH_METHOD,
        request_serializer=link_pb2.PushRequest.SerializeToString,
        response_deserializer=link_pb2.PushResponse.FromString,
    )
    try:
        yield bob, push
    finally:
        ch.close()
        bob.close()


def limits(**kw: int) -> pytest.MarkDecorator:
    """Run the test against a receiver with these limits."""
    return pytest.mark.parametrize("bob_and_push", [kw], indirect=True, ids=["limits"])


def chunk(key: str, length: int, off: int, data: bytes) -> Any:
    return link_pb2.PushRequest(
        sender_rank=0,
        key=key,
        value=data,
        trans_type=link_pb2.CHUNKED,
        chunk_info=link_pb2.ChunkInfo(message_length=length, chunk_offset=off),
    )


def single(key: str, data: bytes) -> Any:
    return link_pb2.PushRequest(sender_rank=0, key=key, value=data)


def refused(push: Push, req: Any, limit: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        push(req, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert limit in str(err.value.details()) and "alice" in str(err.value.details())


def test_a_huge_announced_length_is_refused_at_the_first_chunk(bob_and_push):
    bob, push = bob_and_push
    refused(push, chunk("root:P2P-1:0->1", 1 << 40, 0, b"x" * 1000), "max_message_bytes")
    assert bob.receiver.pending == 0 and bob.receiver.buffered(0) == (0, 0)
    with pytest.raises(ProtocolError, match="announces a 1099511627776-byte value"):
        bob.recv(0, "root:P2P-1:0->1", 5)  # the value is lost: waits fail at once


def test_thousands_of_half_sent_values_are_refused(bob_and_push):
    bob, push = bob_and_push
    refusal = None
    for i in range(1, 2001):
        try:
            push(chunk(f"root:P2P-{i}:0->1", 2000, 0, b"x" * 1000), timeout=10)
        except grpc.RpcError as e:
            refusal = (i, e)
            break
    assert refusal is not None
    i, err = refusal
    assert i == MAX_PENDING_MESSAGES + 1 and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_pending_messages" in str(err.details())
    assert bob.receiver.pending == 0  # the offender's half values are dropped
    with pytest.raises(ProtocolError, match="max_pending_messages"):
        bob.recv(0, "root:P2P-1:0->1", 5)


@limits(max_held_messages=100)
def test_a_key_flood_is_refused(bob_and_push):
    bob, push = bob_and_push
    for i in range(1, 101):
        push(single(f"root:P2P-{i}:0->1", b"v"), timeout=10)
    assert bob.receiver.buffered(0) == (100, 100)
    refused(push, single("root:P2P-101:0->1", b"v"), "max_held_messages")
    with pytest.raises(ProtocolError, match="max_held_messages=100"):
        bob.recv(0, "root:P2P-102:0->1", 5)


@limits(max_held_messages=100)
def test_values_taken_leave_the_budget(bob_and_push):
    """Normal traffic: 1,000 values through a 100-value budget, taken as they come, and
    a value sent again under the same key is counted once."""
    bob, push = bob_and_push
    for i in range(1, 1001):
        key = f"root:P2P-{i}:0->1"
        push(single(key, b"%d" % i), timeout=10)
        if i % 50 == 0:
            for j in range(i - 49, i + 1):
                assert bob.recv(0, f"root:P2P-{j}:0->1", 5) == b"%d" % j
    assert bob.receiver.buffered(0) == (0, 0)
    for _ in range(150):
        push(single("root:P2P-5000:0->1", b"again"), timeout=10)
    assert bob.receiver.buffered(0) == (1, 5)


@limits(max_message_bytes=8000, max_held_bytes=10_000)
def test_buffered_bytes_are_capped(bob_and_push):
    bob, push = bob_and_push
    push(single("root:P2P-1:0->1", b"a" * 6000), timeout=10)
    # a chunked value reserves its announced length at once: refused before its bytes
    refused(push, chunk("root:P2P-2:0->1", 8000, 0, b"b" * 1000), "max_held_bytes=10000")
    assert bob.receiver.buffered(0) == (1, 6000)
    assert bob.recv(0, "root:P2P-1:0->1", 5) == b"a" * 6000  # what arrived before is there


@limits(max_message_bytes=8000, max_held_bytes=10_000)
def test_values_within_the_limits_pass(bob_and_push):
    bob, push = bob_and_push
    value = bytes(range(256)) * 31  # 7936 bytes, in 4 chunks, out of order
    for off in (4000, 0, 6000, 2000):
        push(chunk("root:P2P-1:0->1", len(value), off, value[off : off + 2000]), timeout=10)
    assert bob.receiver.buffered(0) == (1, len(value))
    assert bob.recv(0, "root:P2P-1:0->1", 5) == value
    assert bob.receiver.buffered(0) == (0, 0)
    push(single("root:P2P-2:0->1", b"z" * 8000), timeout=10)  # exactly the largest
    refused(push, single("root:P2P-3:0->1", b"z" * 8001), "max_message_bytes=8000")


def test_a_sender_over_the_limit_gets_a_clear_network_error(tmp_path: Path):
    """Two real parties (mutual TLS): alice sends bob more than his max_message_bytes."""
    cfgs = loopback_configs(NAMES, tmp_path, chunk_size=64 << 10, connect_timeout=5)
    alice = GrpcTransport(cfgs[0])
    bob = GrpcTransport(dataclasses.replace(cfgs[1], max_message_bytes=1 << 20))
    try:
        alice.send(1, "root:P2P-1:0->1", b"ok" * 1000)
        assert bob.recv(0, "root:P2P-1:0->1", 5) == b"ok" * 1000
        with pytest.raises(NetworkError, match=r"RESOURCE_EXHAUSTED.*max_message_bytes=1048576"):
            alice.send(1, "root:P2P-2:0->1", bytes(2 << 20))
        with pytest.raises(ProtocolError, match="refuses message 'root:P2P-2:0->1' from alice"):
            bob.recv(0, "root:P2P-2:0->1", 5)
    finally:
        alice.close()
        bob.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_message_bytes", 0),
        ("max_pending_messages", -1),
        ("max_held_messages", 1.5),
        ("max_held_bytes", True),
        ("max_held_bytes", 100),  # below max_message_bytes
    ],
)
def test_bad_limits_are_refused(field: str, value: Any) -> None:
    addrs = [f"127.0.0.1:{free_port()}" for _ in NAMES]
    cfg = GrpcConfig(rank=1, names=NAMES, addresses=addrs, tls=None, insecure=True)
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(cfg, **{field: value}).validate()


def test_default_limits_fit_one_ciphertext_per_row_at_ten_million_rows() -> None:
    """The largest real message is one ciphertext per row (fed binning's encrypted
    labels, full-batch LR): measure its frame per row with a 2048-bit Paillier key and
    check the defaults take it at 10**7 rows, with 4096-bit keys too."""
    for bits in (2048, 4096):
        pk = paillier.PublicKey((1 << (bits - 1)) + 1, 4)  # only the sizes matter here
        n = 1000
        ct = np.array([pk.n2 - 1 - i for i in range(n)], dtype=object)
        frame = len(encode(EncryptedArray(pk, ct, 40, True, 1 << 40).to_wire()))
        per_row = frame / n
        assert pk.ct_bytes <= per_row < pk.ct_bytes + 1  # the ciphertext and nothing else
        assert 10**7 * per_row < MAX_MESSAGE_BYTES <= MAX_HELD_BYTES
