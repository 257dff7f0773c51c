from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class PsiDataIoProposal(_message.Message):
    __slots__ = ("supported_versions", "item_num", "result_to_rank")
    SUPPORTED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ITEM_NUM_FIELD_NUMBER: _ClassVar[int]
    RESULT_TO_RANK_FIELD_NUMBER: _ClassVar[int]
    supported_versions: _containers.RepeatedScalarFieldContainer[int]
    item_num: int
    result_to_rank: int
    def __init__(self, supported_versions: _Optional[_Iterable[int]] = ..., item_num: _Optional[int] = ..., result_to_rank: _Optional[int] = ...) -> None: ...

class PsiDataIoResult(_message.Message):
    __slots__ = ("version", "result_to_rank")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULT_TO_RANK_FIELD_NUMBER: _ClassVar[int]
    version: int
    result_to_rank: int
    def __init__(self, version: _Optional[int] = ..., result_to_rank: _Optional[int] = ...) -> None: ...
