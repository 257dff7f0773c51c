from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class EcdhPsiCipherBatch(_message.Message):
    __slots__ = ("type", "batch_index", "is_last_batch", "count", "ciphertext")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    IS_LAST_BATCH_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    type: str
    batch_index: int
    is_last_batch: bool
    count: int
    ciphertext: bytes
    def __init__(self, type: _Optional[str] = ..., batch_index: _Optional[int] = ..., is_last_batch: bool = ..., count: _Optional[int] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...
