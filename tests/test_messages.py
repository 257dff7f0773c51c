"""The one message reader (veil.messages): every malformed value is a ProtocolError in
one format, ``<tag>.<field>: <problem>``, for the declarative specs and for Fields."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from veil import messages as msg
from veil.codec import IntArray
from veil.errors import ProtocolError
from veil.messages import Fields

REC = msg.Record(
    {
        "n": msg.Int(0, 10),
        "name": msg.Str(frozenset({"a", "b"})),
        "blob": msg.Blob(4),
        "arr": msg.Array("int64", max_len=3, lo=0, hi=9),
        "opt": msg.Nullable(msg.Int()),
        "names": msg.StrList(2),
    }
)
GOOD: dict[str, Any] = {
    "n": 3,
    "name": "a",
    "blob": b"abcd",
    "arr": np.array([1, 2], dtype=np.int64),
    "opt": None,
    "names": ["x"],
}


def test_a_good_record_passes() -> None:
    got = msg.check(dict(GOOD), REC, "tag", "peer")
    assert got["n"] == 3 and got["opt"] is None and got["names"] == ["x"]


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"n": None}, "n", "expected an int"),
        ({"n": True}, "n", "expected an int"),
        ({"n": 11}, "n", "outside"),
        ({"name": "c"}, "name", "not one of"),
        ({"name": b"a"}, "name", "expected a str"),
        ({"blob": b"abc"}, "blob", "3 bytes, expected 4"),
        ({"blob": "abcd"}, "blob", "expected bytes"),
        ({"arr": np.arange(4, dtype=np.int64)}, "arr", "at most 3"),
        ({"arr": np.array([1], dtype=np.int32)}, "arr", "dtype int32"),
        ({"arr": np.array([[1]], dtype=np.int64)}, "arr", "2 dimensions"),
        ({"arr": np.array([10], dtype=np.int64)}, "arr", "above 9"),
        ({"arr": np.array([-1], dtype=np.int64)}, "arr", "below 0"),
        ({"arr": [1, 2]}, "arr", "expected an array"),
        ({"opt": "1"}, "opt", "expected an int"),
        ({"names": ["a", "b", "c"]}, "names", "at most 2"),
        ({"names": [1]}, "names[0]", "expected a str"),
        ({"extra": 1}, "extra", "unexpected field"),
    ],
)
def test_spec_names_tag_field_and_peer(change: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(ProtocolError) as e:
        msg.check(GOOD | change, REC, "hello", "bob")
    text = str(e.value)
    assert text.startswith(f"hello.{field}: ") and problem in text and "(from bob)" in text


def test_spec_missing_field_and_wrong_body() -> None:
    bad = dict(GOOD)
    del bad["blob"]
    with pytest.raises(ProtocolError, match=r"^hello\.blob: missing \(from bob\)$"):
        msg.check(bad, REC, "hello", "bob")
    with pytest.raises(ProtocolError, match=r"^hello: expected a mapping, got list$"):
        msg.check([1, 2], REC, "hello")
    with pytest.raises(ProtocolError, match=r"^enc: 3 bytes, expected 4$"):
        msg.check(b"abc", msg.Blob(4), "enc")


class _Peer:
    """A session stand-in that hands back one value."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.asked: list[tuple[str, str, float | None]] = []

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> object:
        self.asked.append((frm, tag, timeout))
        return self.value


def test_recv_checks_what_it_receives() -> None:
    peer = _Peer(b"abcd")
    assert msg.recv(peer, "bob", "enc", msg.Blob(4), 3.0) == b"abcd"
    assert peer.asked == [("bob", "enc", 3.0)]
    with pytest.raises(ProtocolError, match=r"^enc: 5 bytes, at most 4 \(from bob\)$"):
        msg.recv(_Peer(b"abcde"), "bob", "enc", msg.Blob(max_size=4))


def test_fields_reads_good_values() -> None:
    f = Fields(
        "t",
        {
            "i": 5,
            "x": 0.5,
            "b": True,
            "s": "ab",
            "ss": ["a", "b"],
            "by": b"12",
            "d": {"k": 1},
            "l": [1, "a"],
            "ints": [2**70, -1],
            "ia": [1, 2],
            "fa": np.array([1.0, 2.0]),
            "bits": np.packbits([True, False, True]),
            "ct": IntArray([1, 2], 8),
            "null": None,
            "nest": {"y": 1},
        },
    )
    assert f.get_int("i", lo=0, hi=5) == 5 and f.get("i", int) == 5
    assert f.get_float("x") == 0.5 and f.get_bool("b") is True
    assert f.get_str("s", max_len=2) == "ab" and f.get_strs("ss", max_items=2) == ("a", "b")
    assert f.get_bytes("by", 2) == b"12" and f.get_dict("d") == {"k": 1}
    assert f.get_map("d", int) == {"k": 1} and f.get_list("l", size=2) == [1, "a"]
    assert f.integers("ints", 2, 71) == [2**70, -1]
    assert f.int_array("ia", max_size=2, lo=1, hi=2).tolist() == [1, 2]
    assert f.float_array("fa", size=2).tolist() == [1.0, 2.0]
    assert f.bits("bits", 3).tolist() == [True, False, True]
    assert len(f.ciphertexts("ct", size=2)) == 2
    assert not f.is_set("null") and f.nested("nest").get_int("y") == 1
    assert msg.field({"a": b"x"}, "t", "a", bytes) == b"x"


@pytest.mark.parametrize(
    ("read", "where"),
    [
        (lambda f: f.get_int("missing"), r"^t\.missing: missing$"),
        (lambda f: f.get_int("b"), r"^t\.b: is a bool, expected an int$"),
        (lambda f: f.get_int("i", hi=4), r"^t\.i: is 5, expected \.\.\.\.4$"),
        (lambda f: f.get("s", int), r"^t\.s: expected int, got str$"),
        (lambda f: f.get_float("inf"), r"^t\.inf: is not finite$"),
        (lambda f: f.get_bool("i"), r"^t\.i: is a int, expected a bool$"),
        (lambda f: f.get_str("s", max_len=1), r"^t\.s: 2 characters, at most 1$"),
        (lambda f: f.get_strs("l", max_items=5), r"^t\.l: holds a non-string$"),
        (lambda f: f.get_strs("l", max_items=1), r"^t\.l: expected a list of at most 1"),
        (lambda f: f.get_bytes("by", 3), r"^t\.by: expected 3 bytes, got 2$"),
        (lambda f: f.get_dict("l"), r"^t\.l: is a list, expected a dict$"),
        (lambda f: f.get_map("d", str), r"^t\.d\[k\]: expected str$"),
        (lambda f: f.get_list("l", max_size=1), r"^t\.l: has 2 entries, at most 1 allowed$"),
        (lambda f: f.integers("ints", 2, 8), r"^t\.ints: holds an integer wider than 8 bits$"),
        (lambda f: f.integers("l", 2, 8), r"^t\.l: holds a non-integer$"),
        (lambda f: f.array("fa", 3, np.float64), r"^t\.fa: expected a float64 vector of 3"),
        (lambda f: f.int_array("big", max_size=2), r"^t\.big: has 3 entries, at most 2"),
        (lambda f: f.int_array("ia", hi=1), r"^t\.ia: holds 2, above 1$"),
        (lambda f: f.int_array("fa"), r"^t\.fa: is a 1-D float64 array, expected 1-D int"),
        (lambda f: f.float_array("big", size=2), r"^t\.big: has 3 entries, expected 2$"),
        (lambda f: f.float_array("nan"), r"^t\.nan: holds a value that is not finite$"),
        (lambda f: f.bits("by", 3), r"^t\.by: is a bytes, expected packed bits"),
        (lambda f: f.ciphertexts("ia"), r"^t\.ia: is a list, expected ciphertexts"),
        (lambda f: f.nested("i"), r"^t\.i: expected a mapping, got int$"),
        (lambda f: f.nested("nest").get_int("z"), r"^t\.nest\.z: missing$"),
        (lambda f: f.element("ia", 1, "x").int_array(""), r"^t\.ia\[1\]: is a str"),
    ],
)
def test_fields_errors_name_tag_and_field(read: Any, where: str) -> None:
    f = Fields(
        "t",
        {
            "i": 5,
            "b": True,
            "s": "ab",
            "inf": float("inf"),
            "l": [1, "a"],
            "by": b"12",
            "d": {"k": 1},
            "ints": [1, 2**9],
            "ia": [1, 2],
            "fa": np.array([1.0, 2.0]),
            "big": [1, 2, 3],
            "nan": [float("nan")],
            "nest": {"y": 1},
        },
    )
    with pytest.raises(ProtocolError, match=where):
        read(f)


def test_fields_whole_message_errors() -> None:
    with pytest.raises(ProtocolError, match=r"^hello: expected a mapping, got list$"):
        Fields("hello", [1])
    f = Fields("hello", {"pk": {}})
    assert str(f.wrap("pk", ValueError("no n"))) == "hello.pk: is malformed: no n"
    with pytest.raises(ProtocolError, match=r"^hello\.pk: bad$"):
        f.fail("pk", "bad")
    assert str(msg.malformed("hello", "", "too long")) == "hello: too long"
