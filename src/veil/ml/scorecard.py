"""Scorecard points from a logistic regression on WOE features, split by party.

Siddiqi, *Credit Risk Scorecards* (2006), ch. 6 "scaling": with
``factor = pdo / ln 2`` and ``offset = base_score - factor * ln(base_odds)``,

    score = offset + factor * ln(odds good:bad) = offset - factor * logit(p_bad)
          = (offset - factor * b0) + sum_j (-factor * b_j * woe_j(x_j))

so each feature's bin gets ``-factor * b_j * woe`` points and the label holder
keeps the base points ``offset - factor * b0``. WOE here is ln(share of events
/ share of non-events) (positive = riskier), so a riskier bin gets fewer points.

Roles: ``label_holder`` (intercept, its own features' points) and ``partner``
(its own features' points). Each party keeps the points table of its own
features; nobody sends a table.

Flow (joint scoring): partner -> label holder  per-row sum of the partner's
points (one float per row). The label holder adds its own and the base points.

What each party learns: the label holder learns each row's partner point total
(the partner's share of the linear score, as any joint prediction reveals),
not the partner's bins, WOE or coefficients; the partner learns nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError, ProtocolError
from veil.ml.binning import Bins, FloatArray
from veil.net.session import Session

LABEL_HOLDER = "label_holder"


class Tag(StrEnum):
    """Every message of joint scoring."""

    POINTS = "points"


@dataclass(frozen=True)
class ScorecardOptions:
    """Scaling: ``base_score`` points at good:bad odds ``base_odds``; ``pdo``
    points double the odds (e.g. 600 / 50:1 / 20)."""

    base_score: float = 600.0
    pdo: float = 20.0
    base_odds: float = 50.0
    round_points: bool = False

    def __post_init__(self) -> None:
        if self.pdo <= 0:
            raise ConfigError("scorecard.pdo", f"must be > 0, got {self.pdo}", "use e.g. 20")
        if self.base_odds <= 0:
            raise ConfigError(
                "scorecard.base_odds", f"must be > 0, got {self.base_odds}", "use e.g. 50"
            )

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        return self.base_score - self.factor * math.log(self.base_odds)


@dataclass(frozen=True)
class FeaturePoints:
    """Points of every bin of one feature (index = bin index)."""

    name: str
    bins: Bins
    coef: float
    points: FloatArray

    def score(self, values: npt.ArrayLike) -> FloatArray:
        return self.points[self.bins.transform(values)]

    def table(self) -> list[tuple[str, float, float]]:
        """``(bin label, woe, points)`` rows for a report."""
        assert self.bins.woe is not None
        return list(
            zip(self.bins.labels(), self.bins.woe.tolist(), self.points.tolist(), strict=True)
        )


@dataclass(frozen=True)
class PartyScorecard:
    """One party's part of the scorecard: its features' points (and, for the
    label holder, the base points)."""

    features: list[FeaturePoints]
    base_points: float = 0.0

    def score(self, columns: Mapping[str, npt.ArrayLike]) -> FloatArray:
        """This party's points per row (base points included if it has them)."""
        total: FloatArray | None = None
        for f in self.features:
            if f.name not in columns:
                raise ConfigError(f"column '{f.name}'", "is missing", "pass every scored column")
            p = f.score(columns[f.name])
            total = p if total is None else total + p
        if total is None:
            raise ConfigError("scorecard", "has no features")
        return total + self.base_points


@dataclass(frozen=True)
class LinearPart:
    """This party's part of a linear model on WOE features, as a vertical LR
    stores it: ``coef`` apply to ``clip((woe - mean) / std)`` when scaling is set.
    Build it from a hetero_lr ``PartyModel`` with :meth:`of`."""

    feature_names: tuple[str, ...]
    coef: FloatArray
    intercept: float | None = None
    mean: FloatArray | None = None
    std: FloatArray | None = None
    clip: float = 0.0

    @classmethod
    def of(cls, model: Any) -> LinearPart:
        """From any object with these attributes (e.g. ``veil.ml.lr.PartyModel``)."""
        return cls(
            tuple(model.feature_names),
            np.asarray(model.coef, dtype=np.float64),
            None if model.intercept is None else float(model.intercept),
            None if model.mean is None else np.asarray(model.mean, dtype=np.float64),
            None if model.std is None else np.asarray(model.std, dtype=np.float64),
            float(model.clip or 0.0),
        )

    def contribution(self, j: int, woe: FloatArray) -> FloatArray:
        """Feature ``j``'s share of the linear score for each WOE value."""
        x = woe
        if self.mean is not None and self.std is not None:
            x = (x - self.mean[j]) / self.std[j]
        if self.clip > 0:
            x = np.clip(x, -self.clip, self.clip)
        return np.asarray(float(self.coef[j]) * x, dtype=np.float64)


def build(
    bins: Mapping[str, Bins],
    model: LinearPart | Mapping[str, float],
    opts: ScorecardOptions | None = None,
    intercept: float | None = None,
) -> PartyScorecard:
    """Points per bin of this party's features (and base points if it holds the intercept).

    ``model`` is a :class:`LinearPart` or plain ``{feature: coefficient}`` on raw
    WOE. Points reproduce the model exactly: ``-factor`` times each bin's share of
    the linear score, so the summed scorecard equals ``offset - factor * logit``.
    """
    opts = opts or ScorecardOptions()
    if not isinstance(model, LinearPart):
        names = tuple(model)
        model = LinearPart(names, np.asarray([model[n] for n in names], dtype=np.float64))
    if intercept is None:
        intercept = model.intercept
    features = []
    for j, name in enumerate(model.feature_names):
        if name not in bins:
            raise ConfigError(f"model feature '{name}'", "has no bins", "bin every model feature")
        b = bins[name]
        if b.woe is None:
            raise ConfigError(
                f"bins of '{name}'", "have no WOE", "run binning with share_woe: true"
            )
        pts = -opts.factor * model.contribution(j, b.woe)
        if opts.round_points:
            pts = np.round(pts)
        features.append(FeaturePoints(name, b, float(model.coef[j]), pts))
    base = 0.0
    if intercept is not None:
        base = opts.offset - opts.factor * float(intercept)
        if opts.round_points:
            base = float(round(base))
    return PartyScorecard(features, base)


def run_label_holder(
    s: Session,
    card: PartyScorecard,
    columns: Mapping[str, npt.ArrayLike],
    *,
    partners: Sequence[str] | None = None,
) -> FloatArray:
    """Joint score of every row: own points + base + every partner's row sums."""
    total = card.score(columns) if card.features else None
    n = None if total is None else len(total)
    for p in partners if partners is not None else s.peers():
        part = np.asarray(s.recv(p, Tag.POINTS), dtype=np.float64)
        if part.ndim != 1 or (n is not None and len(part) != n):
            raise ProtocolError(f"{p}: sent {part.shape} points for {n} rows")
        total = part if total is None else total + part
        n = len(part)
    if total is None:
        raise ConfigError("scorecard", "no features on any party")
    return total + (0.0 if card.features else card.base_points)


def run_partner(s: Session, card: PartyScorecard, columns: Mapping[str, npt.ArrayLike]) -> None:
    """Send this party's per-row point sums to the label holder."""
    s.send(s.party_of(LABEL_HOLDER), Tag.POINTS, card.score(columns))
