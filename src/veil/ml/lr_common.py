"""Run-level pieces that both vertical LR protocols share: a party's prepared block,
the batch order, the choice of protocol and the checks on what a peer sends.

:mod:`veil.ml.lr_protocol` (the ``he`` protocol and the shared training loop) and
:mod:`veil.ml.lr_gram` (the ``gram`` protocol) use these; nothing here touches the wire.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from veil.errors import ConfigError, ProtocolError
from veil.ml.lr_math import batches, clip_block, fixed_batches, prepare_block
from veil.ml.lr_model import PartyData
from veil.ml.lr_options import LROptions, LRProtocol


@dataclass
class Block:
    """A party's prepared training state."""

    X: np.ndarray
    w: np.ndarray
    n_penalised: int
    valid: np.ndarray | None = None


def prepare(
    data: PartyData, valid: PartyData | None, opts: LROptions, where: str, intercept: bool
) -> tuple[Block, np.ndarray | None, np.ndarray | None]:
    X, mean, std = prepare_block(data.X, data.feature_names, opts, where)
    Xv = None
    if valid is not None:
        if valid.feature_names != data.feature_names:
            raise ConfigError(f"{where}.valid", "validation columns differ from training columns")
        Xv = np.asarray(valid.X, dtype=np.float64)
        if mean is not None and std is not None:
            Xv = (Xv - mean) / std
        Xv = clip_block(Xv, opts.clip)
    k = X.shape[1]
    if intercept:
        X = np.hstack([X, np.ones((len(X), 1))])
        if Xv is not None:
            Xv = np.hstack([Xv, np.ones((len(Xv), 1))])
    return Block(X, np.zeros(X.shape[1]), k, Xv), mean, std


def run_batches(
    n: int, opts: LROptions, epoch: int, seed: int, proto: LRProtocol
) -> Iterator[tuple[int, Any, int]]:
    """``(number, row indices, size of the batch after it)`` of each batch of ``epoch``;
    the last batch of the last epoch is followed by none (size 0). ``gram`` visits a fixed
    partition (numbered once), ``he`` reshuffles every epoch."""
    if proto is LRProtocol.GRAM:
        rows = list(fixed_batches(n, opts.batch_size, epoch, seed))
    else:
        rows = list(enumerate(batches(n, opts.batch_size, epoch, seed)))
    first = n if opts.batch_size <= 0 else min(n, opts.batch_size)  # of every epoch
    for k, (b, idx) in enumerate(rows):
        if k + 1 < len(rows):
            yield b, idx, len(rows[k + 1][1])
        else:
            yield b, idx, first if epoch + 1 < opts.epochs else 0


def resolve_protocol(opts: LROptions, n_partners: int) -> LRProtocol:
    """The protocol a run uses: ``auto`` picks ``gram`` for one partner without class
    weights, else ``he``; an explicit ``gram`` outside that case is an error."""
    fits = n_partners == 1 and opts.class_weight is None
    if opts.protocol is LRProtocol.GRAM and not fits:
        raise ConfigError(
            "hetero_lr.protocol",
            "gram needs exactly one partner and no class_weight",
            "use protocol: he (or auto)",
        )
    if opts.protocol is LRProtocol.AUTO:
        return LRProtocol.GRAM if fits else LRProtocol.HE
    return opts.protocol


def check_hello(
    hello: dict[str, Any], data: PartyData, valid: PartyData | None, opts: LROptions
) -> str | None:
    """Why this partner cannot train with the label holder's parameters, or None."""
    if hello.get("digest") != opts.digest():
        return "hetero_lr options differ from the label holder's; give every party the same"
    try:
        want = resolve_protocol(opts, len(hello.get("partners") or []))
    except ConfigError as e:
        return str(e)
    if hello.get("protocol") != str(want):
        return f"protocol {hello.get('protocol')!r} differs from this party's {str(want)!r}"
    if hello.get("n") != data.n_rows or hello.get("ids") != data.ids_digest():
        return (
            f"training rows differ from the label holder's ({data.n_rows} vs {hello.get('n')}"
            " rows or a different id order); run PSI and the same split first"
        )
    n_valid = 0 if valid is None else valid.n_rows
    if hello.get("n_valid") != n_valid or (
        valid is not None and hello.get("valid_ids") != valid.ids_digest()
    ):
        return "validation rows differ from the label holder's"
    return None


def check_len(c: Any, n: int, frm: str) -> None:
    if len(c) != n:
        raise ProtocolError(f"{frm} sent {len(c)} ciphertexts, expected {n}")


def float_vector(v: Any, n: int, frm: str) -> np.ndarray:
    if not isinstance(v, np.ndarray) or v.shape != (n,) or v.dtype.kind != "f":
        shape = getattr(v, "shape", type(v).__name__)
        raise ProtocolError(f"{frm} sent {shape}, expected a float vector of {n}")
    return v
