"""Typed PSI messages: every malformed peer message is a ProtocolError naming the tag
and the field (never a KeyError or TypeError), for the schema helpers and for each
protocol's messages as a lying peer sends them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from veil.errors import ProtocolError
from veil.net import Session, run_parties
from veil.protocols.psi import Protocol, PsiParams, ecdh, kkrt, run_psi
from veil.protocols.psi import messages as msg

BANK, PARTNER = "bank", "partner"

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
    assert got["n"] == 3 and got["opt"] is None


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
def test_bad_fields_are_named(change: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(ProtocolError) as e:
        msg.check(GOOD | change, REC, "hello", "bob")
    text = str(e.value)
    assert "peer bob" in text and "'hello'" in text and f"field '{field}'" in text
    assert problem in text


def test_missing_field_and_wrong_body_are_named() -> None:
    bad = dict(GOOD)
    del bad["blob"]
    with pytest.raises(ProtocolError, match="'hello' message: field 'blob': missing"):
        msg.check(bad, REC, "hello", "bob")
    with pytest.raises(ProtocolError, match="'hello' message: body: expected a dict"):
        msg.check([1, 2], REC, "hello", "bob")


# -- lying peers against the real protocols --------------------------------------------

Liar = Callable[[Session], None]


def _run_against(liar: Liar, params: PsiParams, honest: Callable[..., Any] = run_psi) -> None:
    run_parties({BANK: lambda s: honest(s, ["a", "b"], params), PARTNER: liar}, timeout=20)


def _hello_liar(tag: str, change: dict[str, Any], drop: str | None = None) -> Liar:
    def liar(s: Session) -> None:
        hello = s.recv(BANK, tag) | change
        if drop:
            del hello[drop]
        s.send(BANK, tag, hello)
        s.recv(BANK, "never", timeout=5)

    return liar


ECDH = PsiParams(result_to=(BANK, PARTNER))
KKRT = PsiParams(result_to=(BANK, PARTNER), protocol=Protocol.KKRT)


@pytest.mark.parametrize("params", [ECDH, KKRT], ids=["ecdh", "kkrt"])
@pytest.mark.parametrize(
    ("change", "drop", "want"),
    [
        ({}, "n", "'hello' message: field 'n': missing"),
        ({"n": "2"}, None, "'hello' message: field 'n': expected an int"),
        ({"n": -1}, None, "'hello' message: field 'n'"),
        ({"result_to": "bank"}, None, "field 'result_to': expected a list"),
        ({"truncate_bits": 1.5}, None, "field 'truncate_bits': expected an int"),
    ],
)
def test_malformed_hello(
    params: PsiParams, change: dict[str, Any], drop: str | None, want: str
) -> None:
    with pytest.raises(ProtocolError, match=want):
        _run_against(_hello_liar("hello", change, drop), params)


def test_ecdh_enc_of_wrong_size_or_type() -> None:
    for body, want in [(b"\x01" * 33, "33 bytes, expected 64"), ([1], "expected bytes")]:

        def liar(s: Session, body: object = body) -> None:
            s.send(BANK, ecdh.Tag.HELLO, s.recv(BANK, ecdh.Tag.HELLO) | {"n": 2})
            s.send(BANK, ecdh.Tag.ENC, body)
            s.recv(BANK, "never", timeout=5)

        with pytest.raises(ProtocolError, match=f"'enc' message: body: {want}"):
            _run_against(liar, ECDH)


def _kkrt_receiver_liar(setup: Any) -> Liar:
    """Plays KKRT receiver (bank is the sender here: result_to is the partner only)."""

    def liar(s: Session) -> None:
        s.send(BANK, kkrt.Tag.HELLO, s.recv(BANK, kkrt.Tag.HELLO) | {"n": 2})
        s.send(BANK, kkrt.Tag.SETUP, setup)
        s.recv(BANK, "never", timeout=5)

    return liar


@pytest.mark.parametrize(
    ("setup", "want"),
    [
        ({"seed": bytes(16), "bins": 128}, "field 'point': missing"),
        ({"seed": bytes(15), "bins": 128, "point": bytes(32)}, "field 'seed': 15 bytes"),
        ({"seed": bytes(16), "bins": "128", "point": bytes(32)}, "field 'bins': expected an int"),
        ({"seed": bytes(16), "bins": 100, "point": bytes(32)}, "field 'bins': 100 bins"),
        ("setup", "body: expected a dict"),
    ],
)
def test_kkrt_malformed_setup(setup: Any, want: str) -> None:
    p = PsiParams(result_to=(PARTNER,), protocol=Protocol.KKRT)
    with pytest.raises(ProtocolError, match=f"'setup' message: {want}"):
        _run_against(_kkrt_receiver_liar(setup), p, kkrt.run_oprf_sender)


def test_kkrt_oversized_result_is_refused() -> None:
    """The OPRF receiver tells the sender more positions than 3m values exist."""
    p = PsiParams(result_to=(BANK, PARTNER), protocol=Protocol.KKRT)
    honest = kkrt.run_oprf_sender

    def liar(s: Session) -> None:
        real = kkrt.run_oprf_receiver  # run the real receiver, then lie in RESULT
        orig = s.send

        def send(to: str, tag: str, value: Any) -> None:
            if tag == kkrt.Tag.RESULT:
                value = np.arange(7, dtype=np.int64)  # sender has 2 ids: 6 values
            orig(to, tag, value)

        s.send = send  # type: ignore[method-assign]
        real(s, ["a", "b"], p)

    with pytest.raises(ProtocolError, match="'result' message: body: axis 0 has length 7"):
        run_parties(
            {PARTNER: lambda s: honest(s, ["a", "b"], p), BANK: liar},
            parties=[BANK, PARTNER],
            timeout=20,
        )
