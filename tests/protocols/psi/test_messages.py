"""Typed PSI messages: every malformed message a lying peer sends is a ProtocolError
naming the tag and the field (never a KeyError or TypeError). The checks themselves are
tested in tests/test_messages.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from veil.errors import ProtocolError
from veil.net import Session, run_parties
from veil.protocols.psi import Protocol, PsiParams, ecdh, kkrt, run_psi

BANK, PARTNER = "bank", "partner"

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
RR22 = PsiParams(result_to=(BANK, PARTNER), protocol=Protocol.RR22)


@pytest.mark.parametrize("params", [ECDH, KKRT, RR22], ids=["ecdh", "kkrt", "rr22"])
@pytest.mark.parametrize(
    ("change", "drop", "want"),
    [
        ({}, "n", r"hello\.n: missing \(from partner\)"),
        ({"n": "2"}, None, r"hello\.n: expected an int"),
        ({"n": -1}, None, r"hello\.n: -1 is outside"),
        ({"result_to": "bank"}, None, r"hello\.result_to: expected a list"),
        ({"truncate_bits": 1.5}, None, r"hello\.truncate_bits: expected an int"),
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

        with pytest.raises(ProtocolError, match=f"^enc: {want}"):
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
        ({"seed": bytes(16), "bins": 128}, r"\.point: missing"),
        ({"seed": bytes(15), "bins": 128, "point": bytes(32)}, r"\.seed: 15 bytes"),
        ({"seed": bytes(16), "bins": "128", "point": bytes(32)}, r"\.bins: expected an int"),
        ({"seed": bytes(16), "bins": 100, "point": bytes(32)}, r"\.bins: 100 bins"),
        ("setup", ": expected a mapping"),
    ],
)
def test_kkrt_malformed_setup(setup: Any, want: str) -> None:
    p = PsiParams(result_to=(PARTNER,), protocol=Protocol.KKRT)
    with pytest.raises(ProtocolError, match=f"^setup{want}"):
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

    with pytest.raises(ProtocolError, match=r"^result: axis 0 has length 7"):
        run_parties(
            {PARTNER: lambda s: honest(s, ["a", "b"], p), BANK: liar},
            parties=[BANK, PARTNER],
            timeout=20,
        )
