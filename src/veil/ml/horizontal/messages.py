"""Messages of horizontal federated training (FedAvg) besides secure aggregation's
own: a :class:`Tag` per message and a typed schema per tag whose ``unpack`` raises
:class:`ProtocolError` naming the tag and the field."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

import numpy as np

from veil.errors import ProtocolError
from veil.messages import field
from veil.ml.horizontal.models import FloatArray


class Tag(StrEnum):
    """Every FedAvg message, in the order they flow."""

    SCHEMA = "schema"  # bank -> aggregator: column names and kinds (no values)
    SCHEMA_OK = "schema_ok"  # aggregator -> bank: the column order, or why not
    SCALING = "scaling"  # aggregator -> bank: pooled feature means and scales
    MODEL = "model"  # aggregator -> bank: the global model of a round (or the final one)
    UPDATE = "update"  # bank -> aggregator: its update, only with secure_aggregation off


def _floats(v: object, tag: Tag, name: str, size: int | None = None) -> FloatArray:
    a = field(v, tag, name, np.ndarray)
    if a.dtype != np.float64 or a.ndim != 1 or (size is not None and a.size != size):
        raise ProtocolError(f"{tag}.{name}: expected {size or 'a vector of'} float64")
    if not np.isfinite(a).all():
        raise ProtocolError(f"{tag}.{name}: NaN or infinity")
    return a


def _strs(v: object, tag: Tag, name: str) -> list[str]:
    items = field(v, tag, name, list)
    if not all(isinstance(x, str) for x in items):
        raise ProtocolError(f"{tag}.{name}: expected a list of str")
    return items


@dataclass(frozen=True)
class Schema:
    """A bank's feature columns and their kinds (``integer``, ``float``, ``bool``)."""

    columns: list[str]
    kinds: list[str]

    def pack(self) -> dict[str, object]:
        return {"columns": self.columns, "kinds": self.kinds}

    @classmethod
    def unpack(cls, v: object) -> Self:
        out = cls(_strs(v, Tag.SCHEMA, "columns"), _strs(v, Tag.SCHEMA, "kinds"))
        if len(out.kinds) != len(out.columns) or len(set(out.columns)) != len(out.columns):
            raise ProtocolError(f"{Tag.SCHEMA}.kinds: one kind per distinct column expected")
        return out


@dataclass(frozen=True)
class SchemaOk:
    """The column order every bank uses, or why the banks' tables do not match."""

    columns: list[str]
    abort: str = ""

    def pack(self) -> dict[str, object]:
        return {"columns": self.columns, "abort": self.abort}

    @classmethod
    def unpack(cls, v: object) -> Self:
        return cls(_strs(v, Tag.SCHEMA_OK, "columns"), field(v, Tag.SCHEMA_OK, "abort", str))


@dataclass(frozen=True)
class Scaling:
    """Pooled feature means and standard deviations, or why their secure sum aborted."""

    mean: FloatArray
    scale: FloatArray
    abort: str = ""

    def pack(self) -> dict[str, object]:
        return {"mean": self.mean, "scale": self.scale, "abort": self.abort}

    @classmethod
    def unpack(cls, v: object, dim: int) -> Self:
        t = Tag.SCALING
        mean, scale = _floats(v, t, "mean", dim), _floats(v, t, "scale", dim)
        out = cls(mean, scale, field(v, t, "abort", str))
        if (out.scale <= 0).any():
            raise ProtocolError(f"{Tag.SCALING}.scale: not positive")
        return out


@dataclass(frozen=True)
class Model:
    """The global model of round ``round``: train from it (``train``) and/or report its
    validation loss; ``banks`` take part (dp splits its noise among them); ``stop``: it
    is the final model, and ``history`` says how training went."""

    round: int
    params: FloatArray
    banks: int
    train: bool
    stop: bool
    history: list[dict[str, Any]]
    abort: str = ""

    def pack(self) -> dict[str, object]:
        return dict(self.__dict__)

    @classmethod
    def unpack(cls, v: object, dim: int) -> Self:
        t = Tag.MODEL
        hist = field(v, t, "history", list)
        if not all(isinstance(h, dict) for h in hist):
            raise ProtocolError(f"{t}.history: expected a list of mappings")
        return cls(
            field(v, t, "round", int),
            _floats(v, t, "params", dim),
            field(v, t, "banks", int),
            field(v, t, "train", bool),
            field(v, t, "stop", bool),
            hist,
            field(v, t, "abort", str),
        )


@dataclass(frozen=True)
class Update:
    """A bank's contribution in the clear (``secure_aggregation: false`` only)."""

    v: FloatArray

    def pack(self) -> dict[str, object]:
        return {"v": self.v}

    @classmethod
    def unpack(cls, v: object, dim: int) -> Self:
        return cls(_floats(v, Tag.UPDATE, "v", dim))
