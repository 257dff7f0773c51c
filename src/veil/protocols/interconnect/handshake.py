"""The ECDH-PSI handshake of the interconnection standard (``org.interconnection.v2``).

Flow (two parties, on the root channel, before any ciphertext):
  1. proposer (rank 1) -> decider (rank 0): ``HandshakeRequest`` {version 2, algo ECDH_PSI,
     family ECC + ``EccProtocolProposal`` (suites, point formats, truncation), io_param
     ``PsiDataIoProposal`` (item count, result_to_rank)}
  2. decider -> proposer: ``HandshakeResponse``: header.error_code 0 with the chosen
     ``EccProtocolResult`` and io_param, or a standard error code and a message.
A refusal raises :class:`HandshakeRefused` on both sides with the same reason.

What each party learns: the other's item count and proposed parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import any_pb2

from veil.errors import NetworkError
from veil.protocols.interconnect.channel import IcChannel
from veil.protocols.interconnect.proto import ecc_pb2, entry_pb2, psi_pb2
from veil.protocols.interconnect.suite import IcSuite
from veil.protocols.interconnect.vocab import (
    ECC_VERSION,
    HANDSHAKE_VERSION,
    PSI_IO_VERSION,
    AlgoType,
    ErrorCode,
    ProtocolFamily,
)


class HandshakeRefused(NetworkError):
    """One side refused the handshake; ``code`` is the standard ``ErrorCode``."""

    def __init__(self, code: int, reason: str, by: str) -> None:
        self.code = code
        self.reason = reason
        try:
            name = ErrorCode(code).name
        except ValueError:
            name = "UNKNOWN"
        super().__init__(f"interconnection handshake refused by {by} ({code} {name}): {reason}")


@dataclass(frozen=True)
class Terms:
    """What this party brings to the handshake."""

    suite: IcSuite
    item_num: int
    result_to_rank: int
    version: int = HANDSHAKE_VERSION


@dataclass(frozen=True)
class Agreement:
    """What both sides agreed on."""

    suite: IcSuite
    result_to_rank: int
    peer_item_num: int  # -1 when the peer did not say
    bit_length_after_truncated: int


def _unpack(any_msg: Any, cls: Any) -> Any | None:
    msg = cls()
    return msg if any_msg.Unpack(msg) else None


def build_request(rank: int, t: Terms) -> bytes:
    """The proposer's ``HandshakeRequest``."""
    req = entry_pb2.HandshakeRequest(version=t.version, requester_rank=rank)
    req.supported_algos.append(AlgoType.ECDH_PSI)
    req.protocol_families.append(ProtocolFamily.ECC)
    ecc = ecc_pb2.EccProtocolProposal(supported_versions=[ECC_VERSION])
    s = t.suite
    ecc.ec_suits.add(curve=s.curve, hash=s.hash, hash2curve_strategy=s.hash_to_curve)
    ecc.point_octet_formats.append(s.point_format)
    ecc.support_point_truncation = False
    req.protocol_family_params.add().Pack(ecc)
    io = psi_pb2.PsiDataIoProposal(
        supported_versions=[PSI_IO_VERSION], item_num=t.item_num, result_to_rank=t.result_to_rank
    )
    req.io_param.Pack(io)
    return bytes(req.SerializeToString())


def judge_request(buf: bytes, t: Terms) -> tuple[ErrorCode, str, int]:
    """The decider's verdict on a request: (code, reason, peer item count)."""
    try:
        helper = entry_pb2.HandshakeVersionCheckHelper.FromString(buf)
        req = entry_pb2.HandshakeRequest.FromString(buf)
    except Exception:
        return ErrorCode.INVALID_REQUEST, "handshake request is not a HandshakeRequest", -1
    if helper.version != t.version:
        return (
            ErrorCode.UNSUPPORTED_VERSION,
            f"handshake version {helper.version} proposed, {t.version} supported",
            -1,
        )
    if AlgoType.ECDH_PSI not in req.supported_algos:
        return ErrorCode.UNSUPPORTED_ALGO, "ECDH-PSI (algo 1) not among the proposed algos", -1
    ecc = None
    fams = list(req.protocol_families)
    if ProtocolFamily.ECC in fams and fams.index(ProtocolFamily.ECC) < len(
        req.protocol_family_params
    ):
        ecc = _unpack(
            req.protocol_family_params[fams.index(ProtocolFamily.ECC)],
            ecc_pb2.EccProtocolProposal,
        )
    io = _unpack(req.io_param, psi_pb2.PsiDataIoProposal) if req.HasField("io_param") else None
    if ecc is None:
        return ErrorCode.INVALID_REQUEST, "request has no ECC protocol proposal", -1
    if io is None:
        return ErrorCode.INVALID_REQUEST, "request has no PSI data-IO proposal", -1
    s = t.suite
    offered = [(e.curve, e.hash, e.hash2curve_strategy) for e in ecc.ec_suits]
    if s.triple() not in offered:
        return (
            ErrorCode.HANDSHAKE_REFUSED,
            f"negotiate ec suits failed: proposed {offered} (curve, hash, hash2curve), "
            f"this party runs {s.triple()} ({s.name})",
            io.item_num,
        )
    if s.point_format not in ecc.point_octet_formats:
        return (
            ErrorCode.HANDSHAKE_REFUSED,
            f"negotiate point octet format failed: proposed {list(ecc.point_octet_formats)}, "
            f"this party uses {int(s.point_format)}",
            io.item_num,
        )
    if io.result_to_rank != t.result_to_rank:
        return (
            ErrorCode.HANDSHAKE_REFUSED,
            f"negotiate result_to_rank failed: proposed {io.result_to_rank}, "
            f"this party expects {t.result_to_rank}",
            io.item_num,
        )
    return ErrorCode.OK, "", io.item_num


def build_response(code: ErrorCode, reason: str, t: Terms, item_num: int) -> bytes:
    """The decider's ``HandshakeResponse`` (io_param as SecretFlow sends it: a proposal)."""
    rsp = entry_pb2.HandshakeResponse()
    rsp.header.error_code = code
    rsp.header.error_msg = reason
    if code == ErrorCode.OK:
        s = t.suite
        rsp.algo = AlgoType.ECDH_PSI
        rsp.protocol_families.append(ProtocolFamily.ECC)
        er = ecc_pb2.EccProtocolResult(
            version=ECC_VERSION, point_octet_format=s.point_format, bit_length_after_truncated=-1
        )
        er.ec_suit.curve, er.ec_suit.hash = s.curve, s.hash
        er.ec_suit.hash2curve_strategy = s.hash_to_curve
        rsp.protocol_family_params.add().Pack(er)
        rsp.io_param.Pack(
            psi_pb2.PsiDataIoProposal(item_num=item_num, result_to_rank=t.result_to_rank)
        )
    return bytes(rsp.SerializeToString())


def read_response(buf: bytes, t: Terms) -> Agreement:
    """Check the decider's answer against what we proposed; raise on refusal or mismatch."""
    try:
        rsp = entry_pb2.HandshakeResponse.FromString(buf)
    except Exception:
        raise HandshakeRefused(
            ErrorCode.INVALID_REQUEST, "answer is not a HandshakeResponse", "rank 0"
        ) from None
    if rsp.header.error_code != ErrorCode.OK:
        raise HandshakeRefused(rsp.header.error_code, rsp.header.error_msg, "rank 0 (peer)")

    def bad(why: str) -> HandshakeRefused:
        return HandshakeRefused(ErrorCode.UNSUPPORTED_PARAMS, why, "rank 1 (this party)")

    if rsp.algo != AlgoType.ECDH_PSI:
        raise bad(f"peer chose algo {rsp.algo}, not ECDH-PSI")
    fams = list(rsp.protocol_families)
    if ProtocolFamily.ECC not in fams:
        raise bad("peer chose no ECC protocol family")
    er = _unpack(
        rsp.protocol_family_params[fams.index(ProtocolFamily.ECC)], ecc_pb2.EccProtocolResult
    )
    if er is None:
        raise bad("peer's ECC result is unreadable")
    got = (er.ec_suit.curve, er.ec_suit.hash, er.ec_suit.hash2curve_strategy)
    if got != t.suite.triple() or er.point_octet_format != t.suite.point_format:
        raise bad(f"peer chose suite {got} format {er.point_octet_format}, not the proposed one")
    peer_items, rtr = -1, None
    io_any = rsp.io_param
    for cls in (psi_pb2.PsiDataIoResult, psi_pb2.PsiDataIoProposal):
        io = _unpack(io_any, cls) if io_any.TypeName() == cls.DESCRIPTOR.full_name else None
        if io is not None:
            rtr = io.result_to_rank
            peer_items = getattr(io, "item_num", -1)
    if rtr is not None and rtr != t.result_to_rank:
        raise bad(f"peer chose result_to_rank {rtr}, this party proposed {t.result_to_rank}")
    return Agreement(t.suite, t.result_to_rank, peer_items, er.bit_length_after_truncated)


def propose(ch: IcChannel, decider: int, t: Terms) -> Agreement:
    """Proposer's side: send the request, wait for the verdict."""
    ch.send(decider, build_request(ch.rank, t))
    return read_response(ch.recv(decider), t)


def decide(ch: IcChannel, proposer: int, t: Terms) -> Agreement:
    """Decider's side: judge the request, answer, and raise if we refused."""
    buf = ch.recv(proposer)
    code, reason, peer_items = judge_request(buf, t)
    ch.send(proposer, build_response(code, reason, t, t.item_num))
    if code != ErrorCode.OK:
        raise HandshakeRefused(code, reason, "rank 0 (this party)")
    return Agreement(t.suite, t.result_to_rank, peer_items, -1)


def pack_any(msg: Any) -> Any:
    """Wrap ``msg`` in ``google.protobuf.Any`` (helper for tests that forge requests)."""
    a = any_pb2.Any()
    a.Pack(msg)
    return a
