from google.protobuf import any_pb2 as _any_pb2
from veil.net.proto import header_pb2 as _header_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlgoType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALGO_TYPE_UNSPECIFIED: _ClassVar[AlgoType]
    ALGO_TYPE_ECDH_PSI: _ClassVar[AlgoType]
    ALGO_TYPE_SS_LR: _ClassVar[AlgoType]

class OpType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OP_TYPE_UNSPECIFIED: _ClassVar[OpType]
    OP_TYPE_SIGMOID: _ClassVar[OpType]

class ProtocolFamily(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROTOCOL_FAMILY_UNSPECIFIED: _ClassVar[ProtocolFamily]
    PROTOCOL_FAMILY_ECC: _ClassVar[ProtocolFamily]
    PROTOCOL_FAMILY_SS: _ClassVar[ProtocolFamily]
    PROTOCOL_FAMILY_PHE: _ClassVar[ProtocolFamily]
ALGO_TYPE_UNSPECIFIED: AlgoType
ALGO_TYPE_ECDH_PSI: AlgoType
ALGO_TYPE_SS_LR: AlgoType
OP_TYPE_UNSPECIFIED: OpType
OP_TYPE_SIGMOID: OpType
PROTOCOL_FAMILY_UNSPECIFIED: ProtocolFamily
PROTOCOL_FAMILY_ECC: ProtocolFamily
PROTOCOL_FAMILY_SS: ProtocolFamily
PROTOCOL_FAMILY_PHE: ProtocolFamily

class HandshakeVersionCheckHelper(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class HandshakeRequest(_message.Message):
    __slots__ = ("version", "requester_rank", "supported_algos", "algo_params", "ops", "op_params", "protocol_families", "protocol_family_params", "io_param")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_RANK_FIELD_NUMBER: _ClassVar[int]
    SUPPORTED_ALGOS_FIELD_NUMBER: _ClassVar[int]
    ALGO_PARAMS_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    OP_PARAMS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FAMILIES_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FAMILY_PARAMS_FIELD_NUMBER: _ClassVar[int]
    IO_PARAM_FIELD_NUMBER: _ClassVar[int]
    version: int
    requester_rank: int
    supported_algos: _containers.RepeatedScalarFieldContainer[int]
    algo_params: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    ops: _containers.RepeatedScalarFieldContainer[int]
    op_params: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    protocol_families: _containers.RepeatedScalarFieldContainer[int]
    protocol_family_params: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    io_param: _any_pb2.Any
    def __init__(self, version: _Optional[int] = ..., requester_rank: _Optional[int] = ..., supported_algos: _Optional[_Iterable[int]] = ..., algo_params: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ..., ops: _Optional[_Iterable[int]] = ..., op_params: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ..., protocol_families: _Optional[_Iterable[int]] = ..., protocol_family_params: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ..., io_param: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class HandshakeResponse(_message.Message):
    __slots__ = ("header", "algo", "algo_param", "ops", "op_params", "protocol_families", "protocol_family_params", "io_param")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ALGO_FIELD_NUMBER: _ClassVar[int]
    ALGO_PARAM_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    OP_PARAMS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FAMILIES_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FAMILY_PARAMS_FIELD_NUMBER: _ClassVar[int]
    IO_PARAM_FIELD_NUMBER: _ClassVar[int]
    header: _header_pb2.ResponseHeader
    algo: int
    algo_param: _any_pb2.Any
    ops: _containers.RepeatedScalarFieldContainer[int]
    op_params: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    protocol_families: _containers.RepeatedScalarFieldContainer[int]
    protocol_family_params: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    io_param: _any_pb2.Any
    def __init__(self, header: _Optional[_Union[_header_pb2.ResponseHeader, _Mapping]] = ..., algo: _Optional[int] = ..., algo_param: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., ops: _Optional[_Iterable[int]] = ..., op_params: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ..., protocol_families: _Optional[_Iterable[int]] = ..., protocol_family_params: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ..., io_param: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...
