"""Joint scoring with a trained vertical LR model; only the label holder learns scores.

Roles as in :mod:`._train`. Flow:
  1. P -> L   PREDICT_HELLO: model id, row count and id digest; L -> P  PREDICT_OK (or why not)
  2. P -> L   PARTIAL_SCORE: X_P w_P on the rows, as fixed-point integers mod 2^64. With
     two or more partners each pair first shares a 32-byte seed (PAIR_SEED, P_i -> P_j,
     i < j) and masks with ChaCha20 keystreams that cancel in the sum, so L learns only
     the sum of the partners' partial scores.
  3. L: score = sigmoid(X_L w_L + b + sum_P X_P w_P).
What each party learns: the label holder learns the scores and hence, with a single
partner, that partner's partial scores (the purpose of scoring); with several partners
only their sum. Partners learn nothing (no message reaches them but "go" and pair seeds).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from veil.errors import ConfigError
from veil.messages import MAX_TEXT, Fields
from veil.ml.lr._math import FloatArray, sigmoid
from veil.ml.lr._model import PartyData, PartyModel
from veil.ml.lr._setup import LABEL_HOLDER, MAX_ROWS, PARTNER
from veil.net.session import Session

_SCALE = float(1 << 32)  # fixed-point scale of partial scores (|z| < 2^31 fits)


class PredictTag(StrEnum):
    """Messages of joint prediction."""

    PREDICT_HELLO = "predict_hello"  # P -> L: model id and row digest
    PREDICT_OK = "predict_ok"  # L -> P: go or the reason not
    PAIR_SEED = "pair_seed"  # P_i -> P_j (i < j): seed of cancelling score masks
    PARTIAL_SCORE = "partial_score"  # P -> L: X_P w_P on the rows to score (masked)


@dataclass(frozen=True)
class PredictHello:
    model_id: str
    n: int
    ids: str

    def to_wire(self) -> dict[str, object]:
        return {"model_id": self.model_id, "n": self.n, "ids": self.ids}

    @classmethod
    def from_wire(cls, obj: object) -> PredictHello:
        f = Fields(PredictTag.PREDICT_HELLO, obj)
        return cls(
            f.get_str("model_id", max_len=MAX_TEXT),
            f.get_int("n", lo=0, hi=MAX_ROWS),
            f.get_str("ids", max_len=MAX_TEXT),
        )


@dataclass(frozen=True)
class PredictOk:
    ok: bool
    error: str

    def to_wire(self) -> dict[str, object]:
        return {"ok": self.ok, "error": self.error}

    @classmethod
    def from_wire(cls, obj: object) -> PredictOk:
        f = Fields(PredictTag.PREDICT_OK, obj)
        return cls(f.get_bool("ok"), f.get_str("error", max_len=MAX_TEXT))


@dataclass(frozen=True)
class PairSeed:
    seed: bytes

    def to_wire(self) -> dict[str, object]:
        return {"seed": self.seed}

    @classmethod
    def from_wire(cls, obj: object) -> PairSeed:
        return cls(Fields(PredictTag.PAIR_SEED, obj).get_bytes("seed", 32))


@dataclass(frozen=True)
class PartialScore:
    z: np.ndarray  # uint64, fixed point mod 2^64

    def to_wire(self) -> dict[str, object]:
        return {"z": self.z}

    @classmethod
    def from_wire(cls, obj: object, n: int) -> PartialScore:
        return cls(Fields(PredictTag.PARTIAL_SCORE, obj).array("z", n, np.uint64))


def _check_model(model: PartyModel, role: str, me: str) -> None:
    if model.role != role:
        raise ConfigError("model.role", f"this is the {model.role}'s part, not the {role}'s")
    if model.party != me:
        raise ConfigError("model.party", f"the model belongs to '{model.party}', not '{me}'")


def predict_label_holder(s: Session, data: PartyData, model: PartyModel) -> FloatArray:
    """Scores P(y=1) of ``data``'s rows, computed with every partner of the model."""
    _check_model(model, LABEL_HOLDER, s.me)
    partners = [p for p in model.parties if p != s.me]
    z = model.partial_score(data.X)
    problems = []
    for p in partners:
        hi = PredictHello.from_wire(s.recv(p, PredictTag.PREDICT_HELLO))
        if hi.model_id != model.model_id:
            problems.append(
                f"partner '{p}' loaded a model from another training run; "
                "load the model files of the same hetero_lr run on every party"
            )
        elif hi.n != data.n_rows or hi.ids != data.ids_digest():
            problems.append(f"partner '{p}' has other rows; align the batch (PSI) first")
    ok = PredictOk(not problems, "; ".join(problems)).to_wire()
    for p in partners:
        s.send(p, PredictTag.PREDICT_OK, ok)
    if problems:
        raise ConfigError("model", "; ".join(problems))
    total = np.zeros(data.n_rows, dtype=np.uint64)
    for p in partners:
        total += PartialScore.from_wire(s.recv(p, PredictTag.PARTIAL_SCORE), data.n_rows).z
    z = z + total.view(np.int64).astype(np.float64) / _SCALE
    return sigmoid(z)


def predict_partner(s: Session, data: PartyData, model: PartyModel) -> None:
    """Contribute this partner's share of the scores of ``data``'s rows."""
    _check_model(model, PARTNER, s.me)
    lh = s.party_of(LABEL_HOLDER)
    z = model.partial_score(data.X)
    if not np.all(np.abs(z) < 2.0**30):
        raise ConfigError("data.features", "partial scores too large to encode; check scaling")
    hello = PredictHello(model.model_id, data.n_rows, data.ids_digest())
    s.send(lh, PredictTag.PREDICT_HELLO, hello.to_wire())
    ok = PredictOk.from_wire(s.recv(lh, PredictTag.PREDICT_OK))
    if not ok.ok:
        raise ConfigError("model", ok.error)
    share = np.round(z * _SCALE).astype(np.int64).view(np.uint64)
    partners = [p for p in model.parties if p != lh]
    for other in partners:
        if other == s.me:
            continue
        if partners.index(s.me) < partners.index(other):
            seed = secrets.token_bytes(32)
            s.send(other, PredictTag.PAIR_SEED, PairSeed(seed).to_wire())
            share = share + _keystream(seed, data.n_rows)
        else:
            seed = PairSeed.from_wire(s.recv(other, PredictTag.PAIR_SEED)).seed
            share = share - _keystream(seed, data.n_rows)
    s.send(lh, PredictTag.PARTIAL_SCORE, PartialScore(share).to_wire())


def _keystream(seed: bytes, n: int) -> np.ndarray:
    """``n`` uniform uint64 words of ChaCha20(seed) keystream."""
    enc = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor()
    return np.frombuffer(enc.update(b"\0" * (8 * n)), dtype="<u8").astype(np.uint64)
