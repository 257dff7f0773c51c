"""Joint scoring with a trained vertical LR model; only the label holder learns scores.

Roles as in :mod:`veil.ml.lr_protocol`. Flow:
  1. P -> L   model id, row count and id digest; L -> P  go (or why not)
  2. P -> L   X_P w_P on the rows, as fixed-point integers mod 2^64. With two or
     more partners each pair first shares a 32-byte seed (P_i -> P_j, i < j) and
     masks with ChaCha20 keystreams that cancel in the sum, so L learns only the
     sum of the partners' partial scores.
  3. L: score = sigmoid(X_L w_L + b + sum_P X_P w_P).
What each party learns: the label holder learns the scores and hence, with a single
partner, that partner's partial scores; with several partners only their sum.
Partners learn nothing (no message reaches them but "go" and pair seeds).
"""

from __future__ import annotations

import secrets

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from veil.errors import ConfigError, ProtocolError
from veil.ml.lr_math import sigmoid
from veil.ml.lr_model import PartyData, PartyModel
from veil.ml.lr_protocol import LABEL_HOLDER, PARTNER, Tag
from veil.net.session import Session

_SCALE = float(1 << 32)  # fixed-point scale of partial scores (|z| < 2^31 fits)


def _check_model(model: PartyModel, role: str, me: str) -> None:
    if model.role != role:
        raise ConfigError("model.role", f"this is the {model.role}'s part, not the {role}'s")
    if model.party != me:
        raise ConfigError("model.party", f"the model belongs to '{model.party}', not '{me}'")


def predict_label_holder(s: Session, data: PartyData, model: PartyModel) -> np.ndarray:
    """Scores P(y=1) of ``data``'s rows, computed with every partner of the model."""
    _check_model(model, LABEL_HOLDER, s.me)
    partners = [p for p in model.parties if p != s.me]
    z = model.partial_score(data.X)
    problems = []
    for p in partners:
        hi = s.recv(p, Tag.PREDICT_HELLO)
        if hi.get("model_id") != model.model_id:
            problems.append(
                f"partner '{p}' loaded a model from another training run; "
                "load the model files of the same hetero_lr run on every party"
            )
        elif hi.get("n") != data.n_rows or hi.get("ids") != data.ids_digest():
            problems.append(f"partner '{p}' has other rows; align the batch (PSI) first")
    for p in partners:
        s.send(p, Tag.PREDICT_OK, {"ok": not problems, "error": "; ".join(problems)})
    if problems:
        raise ConfigError("model", "; ".join(problems))
    total = np.zeros(data.n_rows, dtype=np.uint64)
    for p in partners:
        part = s.recv(p, Tag.PARTIAL_SCORE)
        if not isinstance(part, np.ndarray) or part.dtype != np.uint64 or part.shape != z.shape:
            raise ProtocolError(f"{p} sent a malformed partial score")
        total += part
    z = z + total.view(np.int64).astype(np.float64) / _SCALE
    return sigmoid(z)


def predict_partner(s: Session, data: PartyData, model: PartyModel) -> None:
    """Contribute this partner's share of the scores of ``data``'s rows."""
    _check_model(model, PARTNER, s.me)
    lh = s.party_of(LABEL_HOLDER)
    z = model.partial_score(data.X)
    if not np.all(np.abs(z) < 2.0**30):
        raise ConfigError("data.features", "partial scores too large to encode; check scaling")
    s.send(
        lh,
        Tag.PREDICT_HELLO,
        {"model_id": model.model_id, "n": data.n_rows, "ids": data.ids_digest()},
    )
    ok = s.recv(lh, Tag.PREDICT_OK)
    if not ok.get("ok"):
        raise ConfigError("model", str(ok.get("error")))
    share = np.round(z * _SCALE).astype(np.int64).view(np.uint64)
    partners = [p for p in model.parties if p != lh]
    for other in partners:
        if other == s.me:
            continue
        if partners.index(s.me) < partners.index(other):
            seed = secrets.token_bytes(32)
            s.send(other, Tag.PAIR_SEED, seed)
            share = share + _keystream(seed, data.n_rows)
        else:
            seed = s.recv(other, Tag.PAIR_SEED)
            if not isinstance(seed, bytes) or len(seed) != 32:
                raise ProtocolError(f"{other} sent a malformed mask seed")
            share = share - _keystream(seed, data.n_rows)
    s.send(lh, Tag.PARTIAL_SCORE, share)


def _keystream(seed: bytes, n: int) -> np.ndarray:
    """``n`` uniform uint64 words of ChaCha20(seed) keystream."""
    enc = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor()
    return np.frombuffer(enc.update(b"\0" * (8 * n)), dtype="<u8").astype(np.uint64)
