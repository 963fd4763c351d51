"""The risk tier: the one rule that turns a risk into high, medium or low, and the tier names.

A model version's bundle sets two thresholds (tiers.high > tiers.medium). A risk at or above the
high threshold is high, at or above the medium threshold medium, else low. Medium and high raise
an alert; low never does. Everything that shows or counts tiers (ingest, the worklist, monitoring,
the model card, FHIR) asks here.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np


class Tier(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


# Worst first: the worklist's order and the order a tier mix is listed in.
TIERS: tuple[Tier, ...] = (Tier.HIGH, Tier.MEDIUM, Tier.LOW)
# Mildest first: the order charts and tier mixes are drawn in (low, medium, high).
TIER_NAMES_MILDEST_FIRST: tuple[str, ...] = tuple(t.value for t in reversed(TIERS))
# The tiers that put an alert in front of a unit's clinicians.
ALERT_TIERS: tuple[Tier, ...] = (Tier.HIGH, Tier.MEDIUM)


def thresholds(*, high: float, medium: float) -> dict[str, float]:
    """A version's alert tiers and their thresholds, worst first: {"high": 0.5, "medium": 0.25}."""
    return {Tier.HIGH.value: high, Tier.MEDIUM.value: medium}


def tier_of(risk: float, *, high: float, medium: float) -> Tier:
    if risk >= high:
        return Tier.HIGH
    if risk >= medium:
        return Tier.MEDIUM
    return Tier.LOW


def tiers_of(risks, *, high: float, medium: float) -> np.ndarray:
    """tier_of over an array of risks: an array of tier names (strings)."""
    risks = np.asarray(risks, dtype=float)
    return np.where(
        risks >= high, Tier.HIGH.value, np.where(risks >= medium, Tier.MEDIUM.value, Tier.LOW.value)
    )


def raises_alert(tier: str | None) -> bool:
    return tier in ALERT_TIERS


def tier_counts(tiers) -> dict[str, int]:
    """{"high": n, "medium": n, "low": n}, every tier present (zero when none)."""
    values = np.asarray(list(tiers) if not isinstance(tiers, np.ndarray) else tiers, dtype=object)
    return {t.value: int(np.count_nonzero(values == t.value)) for t in TIERS}
