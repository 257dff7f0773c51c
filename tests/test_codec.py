"""The wire codec: round trips, refusal of unsafe types, malformed frames."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from veil.codec import IntArray, decode, encode
from veil.errors import ProtocolError

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(values)
def test_roundtrip(v: object) -> None:
    assert decode(encode(v)) == v


@pytest.mark.parametrize("dtype", ["<f8", "<i4", ">i8", "u1", "?", "S12", "<c16"])
def test_numpy_roundtrip(dtype: str) -> None:
    a = np.zeros((3, 4), dtype=dtype)
    b = decode(encode(a))
    assert b.dtype == a.dtype and b.shape == (3, 4) and (b == a).all()
    b[0, 0] = a[0, 0]  # writable


def test_intarray_roundtrip() -> None:
    vals = [0, 1, 2**2047 + 5, 2**2048 - 1]
    back = decode(encode(IntArray(vals, 256)))
    assert isinstance(back, IntArray) and list(back.values) == vals


def test_refuses_objects_and_pickle_bait() -> None:
    with pytest.raises(TypeError, match="pickle"):
        encode(object())
    with pytest.raises(TypeError, match="object"):
        encode(np.array([1, "a"], dtype=object))


@given(st.binary(max_size=64))
def test_garbage_raises_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


def test_truncated_frame() -> None:
    raw = encode(np.arange(10))
    with pytest.raises(ProtocolError):
        decode(raw[:-3])
