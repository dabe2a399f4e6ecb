"""Routing policy: tiers, their queues and SLAs, cut-offs chosen at training time and stored with the model."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from leadscore.features.mapping import load_yaml_model
from leadscore.models import placement


class TierSpec(BaseModel):
    """How big a tier is: a ``share`` of leads, or a capacity ``per_week`` at the recent lead rate."""

    model_config = ConfigDict(extra="forbid")

    name: str
    queue: str
    sla_hours: float | None = None
    share: float | None = Field(default=None, gt=0, le=1)
    per_week: float | None = Field(default=None, gt=0)


class RoutingSpec(BaseModel):
    """Tiers from best to worst; the last one takes every lead left (give it neither share nor per_week)."""

    model_config = ConfigDict(extra="forbid")

    tiers: list[TierSpec] = Field(min_length=2)

    @model_validator(mode="after")
    def _check(self) -> RoutingSpec:
        *sized, rest = self.tiers
        for tier in sized:
            if (tier.share is None) == (tier.per_week is None):
                raise ValueError(f"tier {tier.name!r} needs exactly one of 'share' or 'per_week'")
        if rest.share is not None or rest.per_week is not None:
            raise ValueError(f"the last tier {rest.name!r} takes the rest: give it no 'share' or 'per_week'")
        return self


def default_routing() -> RoutingSpec:
    return RoutingSpec(
        tiers=[
            TierSpec(name="A", queue="account-executive", sla_hours=1, share=0.10),
            TierSpec(name="B", queue="sdr", sla_hours=24, share=0.20),
            TierSpec(name="C", queue="sdr", sla_hours=48, share=0.30),
            TierSpec(name="D", queue="nurture"),
        ]
    )


def load_routing(path: Path | None) -> RoutingSpec:
    """Read a routing YAML file (a bad one names the file and field); ``None`` gives the default policy."""
    return default_routing() if path is None else load_yaml_model(path, RoutingSpec, "routing")


class Tier(BaseModel):
    name: str
    queue: str
    sla_hours: float | None
    min_probability: float
    expected_share: float


class RoutingPolicy(BaseModel):
    """Fitted tiers: a lead goes to the first tier whose ``min_probability`` it reaches (``p >=``)."""

    tiers: list[Tier]
    leads_per_week: float | None = None

    @property
    def cutoffs(self) -> list[float]:
        """The ``min_probability`` of every tier but the last, best tier first."""
        return [t.min_probability for t in self.tiers[:-1]]

    def tier_index(self, probability: np.ndarray) -> np.ndarray:
        """Each probability's tier, by :func:`models.placement.tiers`."""
        return placement.tiers(self.cutoffs, probability)


def fit_routing(spec: RoutingSpec, probability: np.ndarray, leads_per_week: float | None) -> RoutingPolicy:
    """Choose cut-offs on reference probabilities (the holdout) so each tier gets its share or capacity."""
    p = np.sort(np.asarray(probability, dtype=float))[::-1]
    if len(p) == 0:
        raise ValueError("routing needs reference probabilities")
    tiers, taken = [], 0.0
    for tier in spec.tiers[:-1]:
        if tier.per_week is not None:
            if not leads_per_week:
                raise ValueError(
                    f"tier {tier.name!r} is sized per week, but the data has no timestamps for a lead rate"
                )
            share = tier.per_week / leads_per_week
        else:
            share = tier.share
        taken = min(1.0, taken + share)
        k = max(1, round(taken * len(p)))
        cutoff = float(p[min(k, len(p)) - 1])
        tiers.append(
            Tier(
                name=tier.name, queue=tier.queue, sla_hours=tier.sla_hours, min_probability=cutoff, expected_share=share
            )
        )
    last = spec.tiers[-1]
    tiers.append(
        Tier(
            name=last.name,
            queue=last.queue,
            sla_hours=last.sla_hours,
            min_probability=0.0,
            expected_share=max(0.0, 1 - taken),
        )
    )
    for upper, lower in itertools.pairwise(tiers):
        lower.min_probability = min(lower.min_probability, upper.min_probability)
    return RoutingPolicy(tiers=tiers, leads_per_week=leads_per_week)
