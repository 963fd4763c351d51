"""A risk read against a baseline: how often patients like this unit's had the outcome.

The baseline is the version's labelled reference set: the unit's own rate where the reference set
holds at least BASELINE_MIN_PATIENTS of the unit (from the stored subgroup figures), else the whole
reference set's rate. Both come from the registry's stored figures; nothing here reads the set."""

from __future__ import annotations

from dataclasses import dataclass

from .models import ModelVersion

# Fewer reference patients of a unit than this and its own rate is too noisy to print beside a risk.
BASELINE_MIN_PATIENTS = 30


@dataclass(frozen=True)
class Baseline:
    rate: float
    patients: int
    unit: str | None  # None: the whole reference set

    @property
    def where(self) -> str:
        return f"{self.unit} reference patients" if self.unit else "reference patients"

    @property
    def sentence(self) -> str:
        return f"{round(100 * self.rate)}% of {self.patients:,} {self.where} had the outcome."


def _unit_groups(version: ModelVersion) -> dict:
    for subgroup in (version.subgroups or {}).get("subgroups", []):
        if subgroup.get("column") == "unit":
            return (subgroup.get("result") or {}).get("groups") or {}
    return {}


def version_baselines(version: ModelVersion) -> dict:
    """{"overall": Baseline | None, "units": {unit: Baseline}} of one version."""
    model = (version.metrics or {}).get("model") or {}
    rate = model.get("label_rate")
    overall = None
    if rate is not None and version.reference_size:
        overall = Baseline(rate=float(rate), patients=int(version.reference_size), unit=None)
    units = {
        unit: Baseline(rate=entry["events"] / entry["n"], patients=int(entry["n"]), unit=unit)
        for unit, entry in _unit_groups(version).items()
        if entry.get("n", 0) >= BASELINE_MIN_PATIENTS and entry.get("events") is not None
    }
    return {"overall": overall, "units": units}


def unit_baseline(baselines: dict, unit: str) -> Baseline | None:
    """From version_baselines: the unit's baseline, or the whole reference set's when the unit's is
    not known."""
    return baselines["units"].get(unit) or baselines["overall"]
