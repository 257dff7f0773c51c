"""The interconnection vocabulary in one place: wire keys, batch types, enum values.

Numbers are those of the ``org.interconnection`` protos (PPCA 9-2023); names are ours.
Keys are what SecretFlow's yacl link puts on the wire with ``disable_msg_seq_id`` set.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

#: yacl link id = prefix of every message key; the dual-mask channel is its first spawn.
ROOT_CHANNEL = "root"
#: yacl appends ``\x01\x02`` + sequence id to control keys even with seq ids disabled.
SEQ_SEP = "\x01\x02"
#: Sent by each side at the end of the link (value ``b"0"``); each waits for the other's.
FIN_KEY = "FIN" + SEQ_SEP
FIN_VALUE = b"0"
#: Mesh connect: each rank sends ``connect_{rank}`` to every peer and waits for theirs.
CONNECT_PREFIX = "connect_"
#: Points per ``enc`` batch, as the reference peer sends them.
BATCH_SIZE = 4096
#: The reference peer keeps the last 12 bytes of every ``dual.enc`` point.
DUAL_ENC_BYTES = 12
#: Handshake protocol version (HandshakeRequest.version).
HANDSHAKE_VERSION = 2
#: Version of the ECC protocol-family and PSI data-IO proposals.
ECC_VERSION = 1
PSI_IO_VERSION = 1
#: result_to_rank meaning "every party gets the intersection".
ALL_RANKS = -1


class BatchType(StrEnum):
    """``EcdhPsiCipherBatch.type`` values."""

    ENC = "enc"
    DUAL_ENC = "dual.enc"


class ErrorCode(IntEnum):
    """``org.interconnection.ErrorCode``."""

    OK = 0
    GENERIC_ERROR = 31100000
    UNEXPECTED_ERROR = 31100001
    NETWORK_ERROR = 31100002
    INVALID_REQUEST = 31100100
    INVALID_RESOURCE = 31100101
    HANDSHAKE_REFUSED = 31100200
    UNSUPPORTED_VERSION = 31100201
    UNSUPPORTED_ALGO = 31100202
    UNSUPPORTED_PARAMS = 31100203


class AlgoType(IntEnum):
    ECDH_PSI = 1


class ProtocolFamily(IntEnum):
    ECC = 1


class Curve(IntEnum):
    """``org.interconnection.v2.protocol.CurveType``."""

    CURVE25519 = 1
    SM2 = 2
    ED25519 = 3


class HashType(IntEnum):
    SM3 = 1
    SHA_256 = 11


class HashToCurve(IntEnum):
    TRY_AND_INCREMENT = 1
    TRY_AND_REHASH = 2
    DIRECT_HASH_AS_POINT_X = 3


class PointFormat(IntEnum):
    UNCOMPRESSED = 1
    X962_COMPRESSED = 2


def connect_key(rank: int) -> str:
    """The mesh-connect key rank ``rank`` sends (plain form; the peer adds ``\\x01\\x020``)."""
    return f"{CONNECT_PREFIX}{rank}"


def channel_key(channel: str, counter: int, src: int, dst: int) -> str:
    """yacl's P2P key: ``{channel}:P2P-{counter}:{src}->{dst}``, counter from 1."""
    return f"{channel}:P2P-{counter}:{src}->{dst}"
