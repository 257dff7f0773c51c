"""The wire codec: round trips, refusal of unsafe types, malformed and hostile frames."""

from __future__ import annotations

import contextlib
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from veil.codec import ARRAY_DTYPES, MIN_INT_WIDTH, IntArray, decode, encode
from veil.errors import ProtocolError

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
U32, U64 = struct.Struct("<I"), struct.Struct("<Q")
LIST, DICT, NDARRAY, INTARRAY = 7, 8, 9, 10


def array_frame(dtype: bytes, shape: tuple[int, ...], raw: bytes) -> bytes:
    """An ndarray frame with the given dtype string, shape and body, however wrong."""
    head = bytes((NDARRAY, len(dtype))) + dtype + bytes((len(shape),))
    return head + b"".join(U64.pack(d) for d in shape) + U64.pack(len(raw)) + raw


@given(values)
def test_roundtrip(v: object) -> None:
    assert decode(encode(v)) == v


@pytest.mark.parametrize("dtype", ["<f8", "<i4", ">i8", "u1", "?", "S12", "<c16", ">f4", "S64"])
def test_numpy_roundtrip(dtype: str) -> None:
    a = np.zeros((3, 4), dtype=dtype)
    b = decode(encode(a))
    assert b.dtype == a.dtype and b.shape == (3, 4) and (b == a).all()
    b[0, 0] = a[0, 0]  # writable


def test_array_dtypes_are_an_allow_list() -> None:
    for name in ["bool", "int8", "int16", "int32", "int64", "uint8", "uint64", "float32"]:
        for order in "<>":
            dt = np.dtype(name).newbyteorder(order)
            assert ARRAY_DTYPES[dt.str.encode()] == dt
    assert b"|S1" in ARRAY_DTYPES and b"|S64" in ARRAY_DTYPES and b"|S65" not in ARRAY_DTYPES
    for refused in ["<f2", "S65", "<U3", "<M8[s]", "V8", "<f16"]:
        with pytest.raises(TypeError, match="ARRAY_DTYPES"):
            encode(np.zeros(2, dtype=refused))


@pytest.mark.parametrize(
    "dtype",
    [b"i4,(", b"i4,i4", b"(2,)i4", b"O", b"|O", b"<U4", b"V8", b"<M8[s]", b"f2", b"S0", b"\xff"],
)
def test_crafted_dtype_strings_are_refused(dtype: bytes) -> None:
    """numpy never parses a peer's dtype string (``b'i4,('`` used to escape as SyntaxError)."""
    with pytest.raises(ProtocolError, match="dtype"):
        decode(array_frame(dtype, (1,), b"\0" * 4))


def test_array_shapes_are_checked_exactly() -> None:
    big = 1 << 32  # 2**32 * 2**32 wraps to 0 in int64: no longer taken for an empty array
    with pytest.raises(ProtocolError, match="shape"):
        decode(array_frame(b"<i4", (big, big), b""))
    with pytest.raises(ProtocolError, match="shape"):
        decode(array_frame(b"<i4", (3,), b"\0" * 8))
    with pytest.raises(ProtocolError, match="dimensions"):
        decode(array_frame(b"<i4", (1,) * 40, b"\0" * 4))
    with pytest.raises(ProtocolError, match="bool"):
        decode(array_frame(b"|b1", (2,), b"\x00\x07"))
    assert decode(array_frame(b"<i4", (0, 1 << 40), b"")).shape == (0, 1 << 40)


def test_intarray_roundtrip() -> None:
    vals = [0, 1, 2**2047 + 5, 2**2048 - 1]
    back = decode(encode(IntArray(vals, 256)))
    assert isinstance(back, IntArray) and list(back.values) == vals


def test_narrow_intarrays_are_refused() -> None:
    """Each value becomes a Python int (~36 bytes): width 1 would expand a frame ~37x."""
    with pytest.raises(TypeError, match="int64"):
        encode(IntArray([1, 2, 3], MIN_INT_WIDTH - 1))
    frame = bytes((INTARRAY,)) + U32.pack(1) + U64.pack(1000) + bytes(1000)
    with pytest.raises(ProtocolError, match="width"):
        decode(frame)
    with pytest.raises(ProtocolError, match="multiple"):
        decode(bytes((INTARRAY,)) + U32.pack(8) + U64.pack(12) + bytes(12))
    assert list(decode(encode(IntArray([5, 6], MIN_INT_WIDTH))).values) == [5, 6]


def test_counts_are_checked_against_the_buffer() -> None:
    """A list or dict that announces more items than bytes left is refused at once."""
    with pytest.raises(ProtocolError, match="list of 4294967295"):
        decode(bytes((LIST,)) + U32.pack(2**32 - 1) + bytes(16))
    with pytest.raises(ProtocolError, match="dict of 1000"):
        decode(bytes((DICT,)) + U32.pack(1000) + bytes(100))


@pytest.mark.parametrize(
    "value",
    [
        [None] * 200_000,
        [[] for _ in range(100_000)],
        {str(i): {} for i in range(50_000)},
        [0] * 100_000,
        IntArray(list(range(100_000)), MIN_INT_WIDTH),
        np.arange(100_000),
    ],
    ids=["nones", "empty-lists", "dict-of-dicts", "small-ints", "intarray-8", "ndarray"],
)
def test_decoded_size_stays_within_16x_the_frame(value: object) -> None:
    """The shapes that expand most (tiny elements) stay under the documented bound."""
    frame = encode(value)
    tracemalloc.start()
    try:
        out = decode(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 16 * len(frame), (peak, len(frame))
    assert out is not None


def test_refuses_objects_and_pickle_bait() -> None:
    with pytest.raises(TypeError, match="pickle"):
        encode(object())
    with pytest.raises(TypeError, match="object"):
        encode(np.array([1, "a"], dtype=object))


@settings(max_examples=500)
@given(st.binary(max_size=256))
@example(array_frame(b"i4,(", (1,), b"\0" * 4))
def test_garbage_raises_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


VALID = [
    encode({"op": "tree", "rows": np.arange(7, dtype=np.int32), "k": 3, "f": 0.5}),
    encode({"ct": IntArray([3, 2**300, 7], 64), "shape": [3], "float": True, "bound": 9}),
    encode([b"abc", "x", None, True, -(2**70), [np.zeros((2, 2), ">f8")], {"a": {}}]),
    encode(np.array([b"ab", b"c"], dtype="S4")),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid frame with some bytes flipped, inserted, deleted or overwritten."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "set"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[i : i + draw(st.integers(1, 8))]
        elif op == "set" and data:
            data[i] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_frames_raise_only_protocol_error(data: bytes) -> None:
    """Flipped, inserted and deleted bytes in real frames: a value or ProtocolError."""
    with contextlib.suppress(ProtocolError):
        decode(data)


def test_truncated_frame() -> None:
    raw = encode(np.arange(10))
    for cut in range(1, len(raw)):
        with pytest.raises(ProtocolError):
            decode(raw[:cut])
