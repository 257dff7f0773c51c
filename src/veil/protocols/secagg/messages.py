"""The message vocabulary of secure aggregation: one :class:`Tag` per message and a
typed schema per tag. ``pack()`` gives the codec value sent; ``unpack(value)`` checks a
received one and raises :class:`ProtocolError` naming the tag and the field.

Every message from the aggregator carries ``abort``: empty, or why the round stopped
(a bank then raises :class:`RoundAborted` with that reason instead of waiting).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Self, TypeVar

import numpy as np

from veil.errors import ProtocolError
from veil.messages import Fields, field
from veil.protocols.secagg import shamir
from veil.protocols.secagg.masks import KEY_BYTES, Ring

T = TypeVar("T")
MAX_SUMS = 100_000  # keys for at most this many sums in one setup


class Tag(StrEnum):
    """Every message of the protocol, in the order they flow (setup once, then per sum)."""

    SETUP = "setup"  # aggregator -> bank: its holder index, neighbours, threshold, sizes
    KEYS = "keys"  # bank -> aggregator: X25519 public keys (shares, and masks of each sum)
    PEER_KEYS = "peer_keys"  # aggregator -> bank: its neighbours' public keys
    SHARES = "shares"  # bank -> aggregator: encrypted Shamir shares, one per neighbour
    PEER_SHARES = "peer_shares"  # aggregator -> bank: neighbours' encrypted shares for it
    MASKED = "masked"  # bank -> aggregator: masked quantised update
    UNMASK = "unmask"  # aggregator -> bank: which neighbours dropped, which survived
    REVEAL = "reveal"  # bank -> aggregator: shares of dropped keys / surviving seeds
    RESULT = "result"  # aggregator -> bank: the round's outcome


def _str_map(value: object, tag: Tag, name: str, typ: type[T]) -> dict[str, T]:
    return Fields(tag, value).get_map(name, typ)


def _names(value: object, tag: Tag, name: str) -> list[str]:
    items = field(value, tag, name, list)
    if not all(isinstance(x, str) for x in items) or len(set(items)) != len(items):
        raise ProtocolError(f"{tag}.{name}: expected distinct party names")
    return items


@dataclass(frozen=True)
class Setup:
    """The plan for one bank."""

    index: int  # this bank's Shamir holder index
    neighbours: dict[str, int]  # neighbour -> its holder index
    threshold: int
    sums: int  # how many sums the keys are for
    frac_bits: int
    n_terms: int  # contributions summed (for the ring's range)
    abort: str = ""

    def pack(self) -> dict[str, object]:
        return dict(self.__dict__)

    @classmethod
    def unpack(cls, v: object) -> Self:
        t = Tag.SETUP
        out = cls(
            index=field(v, t, "index", int),
            neighbours=_str_map(v, t, "neighbours", int),
            threshold=field(v, t, "threshold", int),
            sums=field(v, t, "sums", int),
            frac_bits=field(v, t, "frac_bits", int),
            n_terms=field(v, t, "n_terms", int),
            abort=field(v, t, "abort", str),
        )
        idx = [out.index, *out.neighbours.values()]
        if len(set(idx)) != len(idx) or not all(0 < i <= shamir.MAX_HOLDER for i in idx):
            raise ProtocolError(f"{t}.neighbours: holder indices must be distinct, 1..2^16")
        if not 0 < out.threshold <= len(idx):
            raise ProtocolError(f"{t}.threshold: {out.threshold} is not in 1..{len(idx)}")
        if not 0 < out.sums <= MAX_SUMS or not 0 <= out.frac_bits < 62 or out.n_terms < 1:
            raise ProtocolError(f"{t}.sums: sizes out of range")
        return out


@dataclass(frozen=True)
class Keys:
    """A bank's public keys: one for share encryption, one per sum for pairwise masks."""

    enc: bytes
    masks: list[bytes]

    def pack(self) -> dict[str, object]:
        return {"enc": self.enc, "masks": self.masks}

    @classmethod
    def unpack(cls, v: object, tag: Tag = Tag.KEYS, sums: int | None = None) -> Self:
        enc, mks = field(v, tag, "enc", bytes), field(v, tag, "masks", list)
        if len(enc) != KEY_BYTES or not all(isinstance(k, bytes) for k in mks):
            raise ProtocolError(f"{tag}.enc: public keys are {KEY_BYTES} bytes")
        if any(len(k) != KEY_BYTES for k in mks) or (sums is not None and len(mks) != sums):
            raise ProtocolError(f"{tag}.masks: expected {sums} keys of {KEY_BYTES} bytes")
        return cls(enc, mks)


@dataclass(frozen=True)
class PeerKeys:
    """The public keys of the neighbours that advertised them."""

    keys: dict[str, Keys]
    abort: str = ""

    def pack(self) -> dict[str, object]:
        return {"keys": {k: v.pack() for k, v in self.keys.items()}, "abort": self.abort}

    @classmethod
    def unpack(cls, v: object, sums: int) -> Self:
        t = Tag.PEER_KEYS
        raw = _str_map(v, t, "keys", dict)
        keys = {k: Keys.unpack(x, t, sums) for k, x in raw.items()}
        return cls(keys, field(v, t, "abort", str))


@dataclass(frozen=True)
class Shares:
    """Encrypted shares: recipient -> ciphertext (bank -> aggregator), or sender ->
    ciphertext (aggregator -> bank, :data:`Tag.PEER_SHARES`)."""

    boxes: dict[str, bytes]
    abort: str = ""

    def pack(self) -> dict[str, object]:
        return {"boxes": self.boxes, "abort": self.abort}

    @classmethod
    def unpack(cls, v: object, tag: Tag) -> Self:
        return cls(_str_map(v, tag, "boxes", bytes), field(v, tag, "abort", str))


@dataclass(frozen=True)
class Masked:
    """A bank's masked, quantised update."""

    y: Ring

    def pack(self) -> dict[str, object]:
        return {"y": self.y}

    @classmethod
    def unpack(cls, v: object, dim: int) -> Self:
        y = field(v, Tag.MASKED, "y", np.ndarray)
        if y.dtype != np.uint64 or y.shape != (dim,):
            raise ProtocolError(f"{Tag.MASKED}.y: expected {dim} uint64, got {y.dtype}{y.shape}")
        return cls(y)


@dataclass(frozen=True)
class Unmask:
    """Which of a bank's neighbours dropped and which sent their masked update."""

    dropped: list[str]
    survivors: list[str]
    abort: str = ""

    def pack(self) -> dict[str, object]:
        return {"dropped": self.dropped, "survivors": self.survivors, "abort": self.abort}

    @classmethod
    def unpack(cls, v: object) -> Self:
        t = Tag.UNMASK
        out = cls(_names(v, t, "dropped"), _names(v, t, "survivors"), field(v, t, "abort", str))
        if set(out.dropped) & set(out.survivors):
            raise ProtocolError(f"{t}.dropped: a bank is listed as dropped and as a survivor")
        return out


@dataclass(frozen=True)
class Reveal:
    """A bank's shares: of the mask keys of dropped neighbours, of the self-mask seeds
    of survivors (never both for one bank)."""

    mask_keys: dict[str, bytes]
    seeds: dict[str, bytes]

    def pack(self) -> dict[str, object]:
        return {"mask_keys": self.mask_keys, "seeds": self.seeds}

    @classmethod
    def unpack(cls, v: object) -> Self:
        t = Tag.REVEAL
        out = cls(_str_map(v, t, "mask_keys", bytes), _str_map(v, t, "seeds", bytes))
        if set(out.mask_keys) & set(out.seeds):
            raise ProtocolError(f"{t}.seeds: a bank's key and seed shares are both revealed")
        return out


@dataclass(frozen=True)
class Result:
    """The outcome: how many banks' updates are in the sum, or why the round aborted."""

    survivors: int
    abort: str = ""

    def pack(self) -> dict[str, object]:
        return {"survivors": self.survivors, "abort": self.abort}

    @classmethod
    def unpack(cls, v: object) -> Self:
        return cls(field(v, Tag.RESULT, "survivors", int), field(v, Tag.RESULT, "abort", str))


@dataclass(frozen=True)
class SharePlain:
    """The plaintext inside one share box: who shares with whom, and for every sum the
    shares of the sender's mask secret key and of its self-mask seed."""

    sender: str
    recipient: str
    mask_keys: list[int]
    seeds: list[int]

    def pack(self) -> dict[str, object]:
        return {
            "from": self.sender,
            "to": self.recipient,
            "mask_keys": [shamir.to_bytes(k) for k in self.mask_keys],
            "seeds": [shamir.to_bytes(k) for k in self.seeds],
        }

    @classmethod
    def unpack(cls, v: object, tag: Tag, sums: int) -> Self:
        lists = []
        for name in ("mask_keys", "seeds"):
            items = field(v, tag, name, list)
            if len(items) != sums or not all(isinstance(x, bytes) for x in items):
                raise ProtocolError(f"{tag}.boxes: {name} must hold {sums} shares")
            try:
                lists.append([shamir.from_bytes(x) for x in items])
            except ValueError as e:
                raise ProtocolError(f"{tag}.boxes: {e}") from None
        return cls(field(v, tag, "from", str), field(v, tag, "to", str), lists[0], lists[1])
