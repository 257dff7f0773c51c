"""Malformed peer messages: every LR message schema refuses a missing field, a wrong
type or an oversized array with a ProtocolError naming the tag and the field, and a
party receiving one mid-run stops with that error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from veil.codec import IntArray
from veil.crypto.he import HEPublicKey, HEScheme, HESecretKey
from veil.errors import ProtocolError
from veil.ml.lr import PartyData
from veil.ml.lr._fields import CipherMessage, IntsMessage
from veil.ml.lr._gram import Cross, GramTag, Rows, Step
from veil.ml.lr._gram_shares import Layout
from veil.ml.lr._homomorphic import encrypt, keygen
from veil.ml.lr._predict import PairSeed, PartialScore, PredictHello, PredictOk
from veil.ml.lr._residuals import ResidualTag
from veil.ml.lr._setup import Hello, Ready, Start, Tag, setup_partner
from veil.ml.lr._validation import EpochDecision, EpochReport, ValidChain
from veil.net.local import run_parties
from veil.net.session import Session
from veil.policy import TEST_POLICY

from .common import opts, train_label_holder

Keys = tuple[HEPublicKey, HESecretKey]


@pytest.fixture(scope="module")
def keys() -> Keys:
    return keygen(HEScheme.OU, 1024, TEST_POLICY)


def refused(parse: Callable[[], object], where: str) -> None:
    """``parse()`` raises a ProtocolError whose message starts with ``tag.field``."""
    with pytest.raises(ProtocolError) as e:
        parse()
    assert str(e.value).startswith(where), (str(e.value), where)


def hello_wire(pk: HEPublicKey) -> dict[str, Any]:
    h = Hello("d" * 16, 240, "ids", 0, "", "m" * 32, ("bureau",), opts().protocol, 14, pk)
    return h.to_wire()


def test_setup_messages(keys: Keys) -> None:
    o, pk = opts(), keys[0]
    good = hello_wire(pk)
    assert Hello.from_wire(good, o, TEST_POLICY).pk == pk
    refused(lambda: Hello.from_wire([1, 2], o, TEST_POLICY), "hello: expected a mapping")
    for name, bad, where in [
        ("digest", None, "hello.digest: missing"),
        ("n", "240", "hello.n: is a str, expected an int"),
        ("n", -1, "hello.n: is -1, expected 1.."),
        ("width", True, "hello.width: is a bool, expected an int"),
        ("partners", ["p"] * 1000, "hello.partners"),
        ("partners", [b"x"], "hello.partners: holds a non-string"),
        ("protocol", "ss", "hello.protocol"),
        ("pk", {"scheme": "ou"}, "hello.pk"),
        ("ids", "x" * 10_000, "hello.ids"),
    ]:
        msg = dict(good)
        if bad is None:
            del msg[name]
        else:
            msg[name] = bad
        refused(lambda m=msg: Hello.from_wire(m, o, TEST_POLICY), where)
    assert Ready.from_wire({"ok": False, "error": "why"}, o, TEST_POLICY).error == "why"
    ready = Ready(True, "", 10, pk).to_wire()
    refused(lambda: Ready.from_wire({**ready, "width": 0}, o, TEST_POLICY), "ready.width")
    refused(
        lambda: Ready.from_wire({"ok": 1}, o, TEST_POLICY), "ready.ok: is a int, expected a bool"
    )
    start = Start(True, "", "", "", 14, 64, 40).to_wire()
    assert Start.from_wire(start).min_batch == 64
    refused(lambda: Start.from_wire({**start, "min_batch": 0}), "start.min_batch")
    refused(lambda: Start.from_wire({**start, "stat_sec": 1.5}), "start.stat_sec")


def test_cipher_and_integer_messages(keys: Keys) -> None:
    pk = keys[0]
    wire = CipherMessage(encrypt(pk, np.zeros(5))).to_wire()
    assert len(CipherMessage.from_wire(wire, ResidualTag.ENC_SCORE, pk, 5).ct) == 5
    refused(
        lambda: CipherMessage.from_wire(wire, ResidualTag.ENC_SCORE, pk, 4),
        "enc_score.ct: shape [5], expected [4]",  # oversized
    )
    refused(
        lambda: CipherMessage.from_wire({}, ResidualTag.ENC_RESIDUAL, pk, 5),
        "enc_residual.ct: missing",
    )
    refused(
        lambda: CipherMessage.from_wire({"ct": "x"}, ResidualTag.MASKED_GRAD, pk, 5),
        "masked_grad.ct: expected an encrypted array",
    )
    short = {**wire["ct"], "ct": IntArray(wire["ct"]["ct"].values[:4], pk.ct_bytes)}
    refused(
        lambda: CipherMessage.from_wire({"ct": short}, ResidualTag.ENC_SCORE, pk, 5),
        "enc_score.ct: ciphertext count does not match",
    )
    other = keygen(HEScheme.PAILLIER, 1024, TEST_POLICY)[0]
    refused(lambda: CipherMessage.from_wire(wire, Tag.VALID_LOSS, other, 5), "valid_loss.ct")
    ok = IntsMessage([1, -2, 3]).to_wire()
    assert IntsMessage.from_wire(ok, ResidualTag.UNMASKED, 3, 64).values == [1, -2, 3]
    for bad, where in [
        ({"values": [1, 2]}, "unmasked.values: 2 values, expected 3"),
        ({"values": [1, 2, 3, 4]}, "unmasked.values: 4 values, expected 3"),
        ({"values": [1, 2.0, 3]}, "unmasked.values: holds a non-integer"),
        ({"values": [1, True, 3]}, "unmasked.values: holds a non-integer"),
        ({"values": [1, 1 << 80, 3]}, "unmasked.values: holds an integer wider"),
        ({"values": np.arange(3)}, "unmasked.values: expected a list"),
    ]:
        refused(lambda b=bad: IntsMessage.from_wire(b, ResidualTag.UNMASKED, 3, 64), where)


def test_epoch_and_validation_messages(keys: Keys) -> None:
    pk = keys[0]
    refused(lambda: EpochReport.from_wire({"converged": "yes"}), "epoch_report.converged")
    refused(lambda: EpochDecision.from_wire({"stop": False}), "epoch_decision.keep: missing")
    vec, total = encrypt(pk, np.zeros(80)), encrypt(pk, np.zeros(1))
    good = ValidChain(vec, total).to_wire()
    assert len(ValidChain.from_wire(good, pk, 80).vec) == 80
    refused(lambda: ValidChain.from_wire(good, pk, 79), "valid_chain.vec: shape [80]")
    refused(
        lambda: ValidChain.from_wire({"vec": good["vec"]}, pk, 80), "valid_chain.total: missing"
    )
    refused(
        lambda: ValidChain.from_wire({**good, "total": good["vec"]}, pk, 80),
        "valid_chain.total: shape [80], expected [1]",
    )


def test_gram_messages(keys: Keys) -> None:
    pk = keys[0]
    lay = Layout(10, 5, 60)
    rows = Rows(lay, 6, [encrypt(pk, np.zeros(70)), encrypt(pk, np.zeros(70))]).to_wire()
    assert Rows.from_wire(rows, pk, lay, 70).f == 6
    refused(lambda: Rows.from_wire({**rows, "per_ct": 4}, pk, lay, 70), "gram_rows.per_ct")
    refused(lambda: Rows.from_wire(rows, pk, Layout(10, 10, 60), 70), "gram_rows.per_ct")
    refused(lambda: Rows.from_wire(rows, pk, lay, 71), "gram_rows.ct[0]: shape [70]")
    refused(lambda: Rows.from_wire({**rows, "f": "6"}, pk, lay, 70), "gram_rows.f")
    cross = Cross([encrypt(pk, np.zeros(15))] * 2, 6).to_wire()
    refused(lambda: Cross.from_wire(cross, pk, lay, 15), "gram_cross.ct[0]: shape [15]")
    refused(lambda: Cross.from_wire({**cross, "ct": cross["ct"][:1]}, pk, lay, 14), "gram_cross.ct")
    step = Step(encrypt(pk, np.zeros(3)), [1, 2, 3], 30).to_wire()
    assert Step.from_wire(step, pk, 3).fw == 30
    refused(lambda: Step.from_wire({**step, "fw": 31}, pk, 3), "gram_step.fw")
    refused(lambda: Step.from_wire({**step, "part": [1, 2]}, pk, 3), "gram_step.part")
    refused(lambda: Step.from_wire(step, pk, 2), "gram_step.ct")
    assert GramTag.STEP == "gram_step"


def test_predict_messages() -> None:
    refused(lambda: PredictHello.from_wire({"model_id": "m", "n": 3}), "predict_hello.ids")
    refused(lambda: PredictOk.from_wire({"ok": "true", "error": ""}), "predict_ok.ok")
    refused(lambda: PairSeed.from_wire({"seed": b"x" * 31}), "pair_seed.seed: expected 32")
    z = np.zeros(4, dtype=np.uint64)
    assert len(PartialScore.from_wire(PartialScore(z).to_wire(), 4).z) == 4
    refused(lambda: PartialScore.from_wire({"z": z}, 5), "partial_score.z")
    refused(lambda: PartialScore.from_wire({"z": z.astype(np.float64)}, 4), "partial_score.z")


def _rogue_partner(
    data: PartyData, send: Callable[[Session, Any], None]
) -> Callable[[Session], None]:
    """A partner that runs the real start, then sends ``send``'s malformed message in
    the first batch and waits for the label holder to give up."""

    def role(s: Session) -> None:
        run, *_ = setup_partner(s, data, None, opts(epochs=1, batch_size=120), TEST_POLICY)
        send(s.sub("e0b0"), run)
        s.sub("e0b0").recv(run.label_holder, ResidualTag.MASKED_GRAD, timeout=30)

    return role


def test_a_malformed_message_stops_the_run(small: list[PartyData]) -> None:
    """A partner's oversized encrypted score (121 for a batch of 120) is refused."""

    def oversized(bs: Session, run: Any) -> None:
        c = encrypt(run.keys.pk, np.zeros(121))
        bs.send(run.label_holder, ResidualTag.ENC_SCORE, CipherMessage(c).to_wire())

    def no_ct(bs: Session, run: Any) -> None:
        bs.send(run.label_holder, ResidualTag.ENC_SCORE, {"cts": 1})

    o = opts(epochs=1, batch_size=120)
    for send, where in [
        (oversized, r"enc_score\.ct: shape \[121\], expected \[120\]"),
        (no_ct, r"enc_score\.ct: missing"),
    ]:
        targets = {
            "bank": lambda s: train_label_holder(s, small[0], o, policy=TEST_POLICY),
            "bureau": _rogue_partner(small[1], send),
        }
        with pytest.raises(ProtocolError, match=where):
            run_parties(targets, roles={"label_holder": "bank"}, timeout=60)
