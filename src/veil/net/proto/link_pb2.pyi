from veil.net.proto import header_pb2 as _header_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TransType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MONO: _ClassVar[TransType]
    CHUNKED: _ClassVar[TransType]
MONO: TransType
CHUNKED: TransType

class ChunkInfo(_message.Message):
    __slots__ = ("message_length", "chunk_offset")
    MESSAGE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_OFFSET_FIELD_NUMBER: _ClassVar[int]
    message_length: int
    chunk_offset: int
    def __init__(self, message_length: _Optional[int] = ..., chunk_offset: _Optional[int] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("sender_rank", "key", "value", "trans_type", "chunk_info")
    SENDER_RANK_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TRANS_TYPE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INFO_FIELD_NUMBER: _ClassVar[int]
    sender_rank: int
    key: str
    value: bytes
    trans_type: TransType
    chunk_info: ChunkInfo
    def __init__(self, sender_rank: _Optional[int] = ..., key: _Optional[str] = ..., value: _Optional[bytes] = ..., trans_type: _Optional[_Union[TransType, str]] = ..., chunk_info: _Optional[_Union[ChunkInfo, _Mapping]] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _header_pb2.ResponseHeader
    def __init__(self, header: _Optional[_Union[_header_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...
