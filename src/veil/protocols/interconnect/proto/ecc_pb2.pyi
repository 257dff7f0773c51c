from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CurveType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CURVE_TYPE_UNSPECIFIED: _ClassVar[CurveType]
    CURVE_TYPE_CURVE25519: _ClassVar[CurveType]
    CURVE_TYPE_SM2: _ClassVar[CurveType]
    CURVE_TYPE_ED25519: _ClassVar[CurveType]

class HashType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HASH_TYPE_UNSPECIFIED: _ClassVar[HashType]
    HASH_TYPE_SM3: _ClassVar[HashType]
    HASH_TYPE_SHA_224: _ClassVar[HashType]
    HASH_TYPE_SHA_256: _ClassVar[HashType]
    HASH_TYPE_SHA_384: _ClassVar[HashType]
    HASH_TYPE_SHA_512: _ClassVar[HashType]
    HASH_TYPE_SHA3_224: _ClassVar[HashType]
    HASH_TYPE_SHA3_256: _ClassVar[HashType]
    HASH_TYPE_SHA3_384: _ClassVar[HashType]
    HASH_TYPE_SHA3_512: _ClassVar[HashType]
    HASH_TYPE_SHAKE_256: _ClassVar[HashType]

class HashToCurveStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HASH_TO_CURVE_STRATEGY_UNSPECIFIED: _ClassVar[HashToCurveStrategy]
    HASH_TO_CURVE_STRATEGY_TRY_AND_INCREMENT: _ClassVar[HashToCurveStrategy]
    HASH_TO_CURVE_STRATEGY_TRY_AND_REHASH: _ClassVar[HashToCurveStrategy]
    HASH_TO_CURVE_STRATEGY_DIRECT_HASH_AS_POINT_X: _ClassVar[HashToCurveStrategy]
    HASH_TO_CURVE_STRATEGY_IRTF_SSWU_RO: _ClassVar[HashToCurveStrategy]
    HASH_TO_CURVE_STRATEGY_IRTF_SSWU_NU: _ClassVar[HashToCurveStrategy]
    HASH_TO_CURVE_STRATEGY_IRTF_ELL2_RO: _ClassVar[HashToCurveStrategy]
    HASH_TO_CURVE_STRATEGY_IRTF_ELL2_NU: _ClassVar[HashToCurveStrategy]

class PointOctetFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POINT_OCTET_FORMAT_UNSPECIFIED: _ClassVar[PointOctetFormat]
    POINT_OCTET_FORMAT_UNCOMPRESSED: _ClassVar[PointOctetFormat]
    POINT_OCTET_FORMAT_X962_COMPRESSED: _ClassVar[PointOctetFormat]
    POINT_OCTET_FORMAT_X962_UNCOMPRESSED: _ClassVar[PointOctetFormat]
    POINT_OCTET_FORMAT_X962_HYBRID: _ClassVar[PointOctetFormat]
CURVE_TYPE_UNSPECIFIED: CurveType
CURVE_TYPE_CURVE25519: CurveType
CURVE_TYPE_SM2: CurveType
CURVE_TYPE_ED25519: CurveType
HASH_TYPE_UNSPECIFIED: HashType
HASH_TYPE_SM3: HashType
HASH_TYPE_SHA_224: HashType
HASH_TYPE_SHA_256: HashType
HASH_TYPE_SHA_384: HashType
HASH_TYPE_SHA_512: HashType
HASH_TYPE_SHA3_224: HashType
HASH_TYPE_SHA3_256: HashType
HASH_TYPE_SHA3_384: HashType
HASH_TYPE_SHA3_512: HashType
HASH_TYPE_SHAKE_256: HashType
HASH_TO_CURVE_STRATEGY_UNSPECIFIED: HashToCurveStrategy
HASH_TO_CURVE_STRATEGY_TRY_AND_INCREMENT: HashToCurveStrategy
HASH_TO_CURVE_STRATEGY_TRY_AND_REHASH: HashToCurveStrategy
HASH_TO_CURVE_STRATEGY_DIRECT_HASH_AS_POINT_X: HashToCurveStrategy
HASH_TO_CURVE_STRATEGY_IRTF_SSWU_RO: HashToCurveStrategy
HASH_TO_CURVE_STRATEGY_IRTF_SSWU_NU: HashToCurveStrategy
HASH_TO_CURVE_STRATEGY_IRTF_ELL2_RO: HashToCurveStrategy
HASH_TO_CURVE_STRATEGY_IRTF_ELL2_NU: HashToCurveStrategy
POINT_OCTET_FORMAT_UNSPECIFIED: PointOctetFormat
POINT_OCTET_FORMAT_UNCOMPRESSED: PointOctetFormat
POINT_OCTET_FORMAT_X962_COMPRESSED: PointOctetFormat
POINT_OCTET_FORMAT_X962_UNCOMPRESSED: PointOctetFormat
POINT_OCTET_FORMAT_X962_HYBRID: PointOctetFormat

class EcSuit(_message.Message):
    __slots__ = ("curve", "hash", "hash2curve_strategy")
    CURVE_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    HASH2CURVE_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    curve: int
    hash: int
    hash2curve_strategy: int
    def __init__(self, curve: _Optional[int] = ..., hash: _Optional[int] = ..., hash2curve_strategy: _Optional[int] = ...) -> None: ...

class EccProtocolProposal(_message.Message):
    __slots__ = ("supported_versions", "ec_suits", "point_octet_formats", "support_point_truncation")
    SUPPORTED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    EC_SUITS_FIELD_NUMBER: _ClassVar[int]
    POINT_OCTET_FORMATS_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_POINT_TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    supported_versions: _containers.RepeatedScalarFieldContainer[int]
    ec_suits: _containers.RepeatedCompositeFieldContainer[EcSuit]
    point_octet_formats: _containers.RepeatedScalarFieldContainer[int]
    support_point_truncation: bool
    def __init__(self, supported_versions: _Optional[_Iterable[int]] = ..., ec_suits: _Optional[_Iterable[_Union[EcSuit, _Mapping]]] = ..., point_octet_formats: _Optional[_Iterable[int]] = ..., support_point_truncation: bool = ...) -> None: ...

class EccProtocolResult(_message.Message):
    __slots__ = ("version", "ec_suit", "point_octet_format", "bit_length_after_truncated")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EC_SUIT_FIELD_NUMBER: _ClassVar[int]
    POINT_OCTET_FORMAT_FIELD_NUMBER: _ClassVar[int]
    BIT_LENGTH_AFTER_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    version: int
    ec_suit: EcSuit
    point_octet_format: int
    bit_length_after_truncated: int
    def __init__(self, version: _Optional[int] = ..., ec_suit: _Optional[_Union[EcSuit, _Mapping]] = ..., point_octet_format: _Optional[int] = ..., bit_length_after_truncated: _Optional[int] = ...) -> None: ...
