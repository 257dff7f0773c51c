"""The generated interconnection protos keep the upstream names and field numbers
(secretflow/interconnection link/transport.proto, common/header.proto)."""

from __future__ import annotations

from pathlib import Path

from veil.net.grpc_transport import PUSH_METHOD
from veil.net.proto import header_pb2, link_pb2


def _fields(msg: type) -> dict[str, int]:
    return {f.name: f.number for f in msg.DESCRIPTOR.fields}  # type: ignore[attr-defined]


def test_link_messages_match_the_interconnection_spec() -> None:
    assert link_pb2.DESCRIPTOR.package == "org.interconnection.link"
    assert link_pb2.PushRequest.DESCRIPTOR.full_name == "org.interconnection.link.PushRequest"
    assert _fields(link_pb2.PushRequest) == {
        "sender_rank": 1,
        "key": 2,
        "value": 3,
        "trans_type": 4,
        "chunk_info": 5,
    }
    assert _fields(link_pb2.ChunkInfo) == {"message_length": 1, "chunk_offset": 2}
    assert _fields(link_pb2.PushResponse) == {"header": 1}
    assert (link_pb2.MONO, link_pb2.CHUNKED) == (0, 1)
    svc = link_pb2.DESCRIPTOR.services_by_name["ReceiverService"]
    assert f"/{svc.full_name}/{svc.methods_by_name['Push'].name}" == PUSH_METHOD
    assert PUSH_METHOD == "/org.interconnection.link.ReceiverService/Push"


def test_response_header_matches_the_interconnection_spec() -> None:
    rh = header_pb2.ResponseHeader
    assert rh.DESCRIPTOR.full_name == "org.interconnection.ResponseHeader"
    assert _fields(rh) == {"error_code": 1, "error_msg": 2}
    assert header_pb2.NETWORK_ERROR == 31100002


def test_known_bytes_on_the_wire() -> None:
    req = link_pb2.PushRequest(
        sender_rank=1,
        key="k",
        value=b"x",
        trans_type=link_pb2.CHUNKED,
        chunk_info=link_pb2.ChunkInfo(message_length=5, chunk_offset=2),
    )
    # field 1 varint 1, field 2 "k", field 3 b"x", field 4 varint 1, field 5 {1: 5, 2: 2}
    assert req.SerializeToString() == bytes.fromhex("080112016b1a017820012a0408051002")


def test_generated_code_runs_on_protobuf_4_25_and_later() -> None:
    """Gencode from protoc >= 26 demands a runtime at least as new as itself; ours comes
    from grpcio-tools 1.62 (protoc 25, see scripts/gen_protos) and carries no such check."""
    for mod in (link_pb2, header_pb2):
        text = Path(str(mod.__file__)).read_text()
        assert "ValidateProtobufRuntimeVersion" not in text
        assert "_builder.BuildTopDescriptorsAndMessages" in text  # 4.25 builder API
