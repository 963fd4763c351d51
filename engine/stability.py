"""Stability of an explanation under plausible measurement noise. Plain numpy, no Django.

Each measured numeric input is redrawn N times from a normal distribution whose spread is the
measurement precision of that feature: a bundle may state it per feature (`precision`, absolute,
in the feature's unit); otherwise a default by unit below applies. Binary and categorical values,
values not measured, and features marked exact (age) are not perturbed. The perturbed rows are
explained together with the patient in one call, and the top-5 features by |SHAP| of each perturbed
explanation are compared with the patient's (Jaccard overlap of the two sets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Measurement precision by unit: ("abs", sd in the unit) or ("rel", sd as a fraction of the value).
# Sources: typical analytical CVs of clinical chemistry/haematology analysers (2-5%), monitor
# accuracy for pressures (+-2 mmHg) and rates, thermometers (0.1 °C).
DEFAULT_PRECISION_BY_UNIT: dict[str, tuple[str, float]] = {
    "mmHg": ("abs", 2.0),
    "/min": ("abs", 2.0),
    "°C": ("abs", 0.1),
    "mmol/L": ("rel", 0.02),
    "mg/dL": ("rel", 0.05),
    "g/dL": ("rel", 0.03),
    "%": ("rel", 0.03),
    "10³/µL": ("rel", 0.04),
    "kg": ("rel", 0.02),
    "mL": ("rel", 0.10),
    "points": ("abs", 1.0),
    "years": ("abs", 0.0),
}
DEFAULT_PRECISION: tuple[str, float] = ("rel", 0.03)
TOP = 5


@dataclass(frozen=True)
class Precision:
    """Per-feature measurement noise: sd = max(absolute, relative * |value|)."""

    absolute: np.ndarray
    relative: np.ndarray

    def sd(self, row: np.ndarray) -> np.ndarray:
        return np.maximum(self.absolute, self.relative * np.abs(row))

    def to_params(self) -> dict:
        return {"absolute": self.absolute.tolist(), "relative": self.relative.tolist()}

    @classmethod
    def from_params(cls, params: dict) -> Precision:
        return cls(np.asarray(params["absolute"], dtype=float), np.asarray(params["relative"], dtype=float))


def precision_for(features: list[dict]) -> Precision:
    """features: [{"kind", "unit", "mutable", "precision"(optional)}] in model order."""
    absolute, relative = [], []
    for feature in features:
        if feature.get("kind", "numeric") != "numeric":
            absolute.append(0.0)
            relative.append(0.0)
        elif feature.get("precision") is not None:
            absolute.append(float(feature["precision"]))
            relative.append(0.0)
        else:
            how, amount = DEFAULT_PRECISION_BY_UNIT.get(feature.get("unit") or "", DEFAULT_PRECISION)
            absolute.append(amount if how == "abs" else 0.0)
            relative.append(amount if how == "rel" else 0.0)
    return Precision(np.array(absolute), np.array(relative))


def perturb(
    row: np.ndarray,
    precision: Precision,
    n: int,
    seed: int,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> np.ndarray:
    """n noisy copies of row (NaN stays NaN), clipped to the plausible range when given."""
    row = np.asarray(row, dtype=np.float64)
    rng = np.random.default_rng(seed)
    sd = np.nan_to_num(precision.sd(row), nan=0.0)
    noisy = row + rng.standard_normal((n, row.size)) * sd
    if lower is not None:
        noisy = np.maximum(noisy, np.where(np.isfinite(lower), lower, -np.inf))
    if upper is not None:
        noisy = np.minimum(noisy, np.where(np.isfinite(upper), upper, np.inf))
    noisy[:, np.isnan(row)] = np.nan
    return noisy


def top_features(shap_row: np.ndarray, top: int = TOP) -> set[int]:
    values = np.abs(np.asarray(shap_row, dtype=np.float64))
    return set(np.argsort(-values, kind="stable")[:top].tolist())


def top_agreement(original: np.ndarray, perturbed: np.ndarray, top: int = TOP) -> np.ndarray:
    """Jaccard overlap of the top features of each perturbed explanation with the original's."""
    reference = top_features(original, top)
    out = []
    for row in np.atleast_2d(perturbed):
        mine = top_features(row, top)
        out.append(len(reference & mine) / len(reference | mine))
    return np.array(out)


def stability_summary(
    original: np.ndarray, perturbed: np.ndarray, names: list[str], threshold: float, top: int = TOP
) -> dict:
    """{"top_k", "perturbations", "agreement", "min_agreement", "identical_share", "unstable",
    "threshold", "changed_features"}; agreement is the mean Jaccard overlap (1 = always the same)."""
    agreement = top_agreement(original, perturbed, top)
    reference = top_features(original, top)
    changed: dict[str, int] = {}
    for row in np.atleast_2d(perturbed):
        for i in reference ^ top_features(row, top):
            changed[names[i]] = changed.get(names[i], 0) + 1
    mean = float(agreement.mean()) if agreement.size else 1.0
    return {
        "top_k": top,
        "perturbations": int(agreement.size),
        "agreement": mean,
        "min_agreement": float(agreement.min()) if agreement.size else 1.0,
        "identical_share": float((agreement == 1.0).mean()) if agreement.size else 1.0,
        "threshold": threshold,
        "unstable": mean < threshold,
        # Features entering or leaving the top-k, with how many perturbations moved them.
        "changed_features": dict(sorted(changed.items(), key=lambda kv: -kv[1])),
    }
