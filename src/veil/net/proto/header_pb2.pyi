from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OK: _ClassVar[ErrorCode]
    GENERIC_ERROR: _ClassVar[ErrorCode]
    UNEXPECTED_ERROR: _ClassVar[ErrorCode]
    NETWORK_ERROR: _ClassVar[ErrorCode]
    INVALID_REQUEST: _ClassVar[ErrorCode]
    INVALID_RESOURCE: _ClassVar[ErrorCode]
    HANDSHAKE_REFUSED: _ClassVar[ErrorCode]
    UNSUPPORTED_VERSION: _ClassVar[ErrorCode]
    UNSUPPORTED_ALGO: _ClassVar[ErrorCode]
    UNSUPPORTED_PARAMS: _ClassVar[ErrorCode]
OK: ErrorCode
GENERIC_ERROR: ErrorCode
UNEXPECTED_ERROR: ErrorCode
NETWORK_ERROR: ErrorCode
INVALID_REQUEST: ErrorCode
INVALID_RESOURCE: ErrorCode
HANDSHAKE_REFUSED: ErrorCode
UNSUPPORTED_VERSION: ErrorCode
UNSUPPORTED_ALGO: ErrorCode
UNSUPPORTED_PARAMS: ErrorCode

class ResponseHeader(_message.Message):
    __slots__ = ("error_code", "error_msg")
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MSG_FIELD_NUMBER: _ClassVar[int]
    error_code: int
    error_msg: str
    def __init__(self, error_code: _Optional[int] = ..., error_msg: _Optional[str] = ...) -> None: ...
