"""Uncertainty of a risk: calibration, a calibrated interval, a conformal outcome set, and an
out-of-distribution check. Plain numpy, no Django.

Everything is fitted on the version's labelled reference set, split in two seeded halves
stratified by the label: the *fit* half fits, the *check* half measures (the coverage stored with
the profile is measured on patients the fit never saw).

- Binned calibration: quantile bins of the risk on the fit half; each bin's observed event rate
  with a Wilson 95% interval and its size ("of reference patients scored 0.62-0.80, 68% (61-74%)
  died within 30 days").
- Venn-Abers interval [low, high] around the risk (inductive Venn-Abers predictor on the fit half):
  one of the two ends is a calibrated probability, so a wide interval says calibration data are thin
  at this risk.
- Split-conformal outcome set at `1 - alpha` (default 90%): the outcomes ({died}, {survived}, or both)
  that cannot be excluded. Its coverage on the check half is measured and stored.
- Out-of-distribution: the mean distance to the k nearest reference patients in robust-scaled
  feature space, over the features both patients have measured, as a percentile of the same
  (leave-one-out) distance among reference patients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression

WILSON_Z = 1.959963984540054  # 95%


def wilson_interval(events: float, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) for n == 0."""
    if n <= 0:
        return 0.0, 1.0
    p = events / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def split_halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded, label-stratified split into a fit half and a check half."""
    labels = np.asarray(labels).astype(int)
    rng = np.random.default_rng(seed)
    fit, check = [], []
    for value in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == value))
        cut = (len(index) + 1) // 2
        fit.append(index[:cut])
        check.append(index[cut:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(check))


# --- binned calibration ------------------------------------------------------------------------


def calibration_bins(risks: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Quantile bins of the risk: [{"low", "high", "n", "events", "observed", "ci", "mean_risk"}].

    The first bin starts at 0 and the last ends at 1, so every risk falls in a bin.
    """
    risks = np.asarray(risks, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    edges = np.unique(np.quantile(risks, np.linspace(0, 1, n_bins + 1)))
    edges[0], edges[-1] = 0.0, 1.0
    index = np.clip(np.searchsorted(edges, risks, side="right") - 1, 0, len(edges) - 2)
    bins = []
    for b in range(len(edges) - 1):
        mask = index == b
        n = int(mask.sum())
        events = int(labels[mask].sum())
        low, high = wilson_interval(events, n)
        bins.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "n": n,
                "events": events,
                "observed": events / n if n else None,
                "ci": [low, high],
                "mean_risk": float(risks[mask].mean()) if n else None,
            }
        )
    return bins


def calibration_bin(bins: list[dict], risk: float) -> dict:
    for b in bins:
        if b["low"] <= risk < b["high"]:
            return b
    return bins[-1]


# --- Venn-Abers --------------------------------------------------------------------------------


def venn_abers(cal_risks: np.ndarray, cal_labels: np.ndarray, risk: float) -> tuple[float, float]:
    """Inductive Venn-Abers interval (p0, p1) for one risk, from a calibration set.

    Isotonic regression of the labels on the risk is fitted twice, with the new patient added
    as a death and as a survival; each fit's value at the patient is one end of the interval.
    """
    x = np.append(np.asarray(cal_risks, dtype=np.float64), risk)
    ends = []
    for label in (0.0, 1.0):
        y = np.append(np.asarray(cal_labels, dtype=np.float64), label)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
        ends.append(float(iso.predict([risk])[0]))
    return ends[0], ends[1]


# --- split-conformal outcome sets --------------------------------------------------------------


def conformal_threshold(risks: np.ndarray, labels: np.ndarray, alpha: float) -> float:
    """Split-conformal quantile of the nonconformity score 1 - p(true outcome)."""
    risks = np.asarray(risks, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    scores = np.where(labels == 1, 1.0 - risks, risks)
    n = len(scores)
    level = min(1.0, np.ceil((n + 1) * (1 - alpha)) / n)
    return float(np.quantile(scores, level, method="higher"))


def conformal_set(risk: float, threshold: float) -> list[int]:
    """Outcomes (1 = event, 0 = no event) whose nonconformity is within the threshold."""
    out = []
    if 1.0 - risk <= threshold:
        out.append(1)
    if risk <= threshold:
        out.append(0)
    return out


def conformal_coverage(risks: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Share of patients whose observed outcome lies in their conformal set."""
    risks = np.asarray(risks, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    covered = np.where(labels == 1, 1.0 - risks <= threshold, risks <= threshold)
    return float(covered.mean()) if len(covered) else float("nan")


# --- out of distribution -----------------------------------------------------------------------


@dataclass(frozen=True)
class OodModel:
    centre: np.ndarray  # per-feature median of the reference
    scale: np.ndarray  # per-feature robust scale (IQR / 1.349, else std, else 1)
    reference: np.ndarray  # reference rows, robust-scaled, NaN where not measured
    k: int
    reference_distances: np.ndarray  # sorted leave-one-out k-NN distances of the reference

    def to_params(self) -> dict:
        return {
            "centre": _nan_list(self.centre),
            "scale": self.scale.tolist(),
            "k": self.k,
            "reference_distances": self.reference_distances.tolist(),
        }


def _nan_list(values: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in values]


def robust_scale(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.asarray(rows, dtype=np.float64)
    with np.errstate(all="ignore"):
        centre = np.nanmedian(rows, axis=0)
        q75, q25 = np.nanpercentile(rows, [75, 25], axis=0)
        scale = (q75 - q25) / 1.349
        std = np.nanstd(rows, axis=0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, std)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    centre = np.where(np.isfinite(centre), centre, 0.0)
    return centre, scale


def _knn_distance(scaled: np.ndarray, reference: np.ndarray, k: int, exclude: int | None = None) -> float:
    """Mean of the k smallest distances, each over the features both rows have measured, scaled up
    to all features (a row with fewer shared values is not artificially close)."""
    diff = reference - scaled
    shared = np.isfinite(diff)
    count = shared.sum(axis=1)
    squares = np.where(shared, diff * diff, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = np.sqrt(squares * reference.shape[1] / count)
    distance[count == 0] = np.inf
    if exclude is not None:
        distance[exclude] = np.inf
    k = min(k, len(distance) - (exclude is not None))
    return float(np.partition(distance, k - 1)[:k].mean())


def ood_fit(reference_rows: np.ndarray, k: int = 10) -> OodModel:
    reference_rows = np.asarray(reference_rows, dtype=np.float64)
    centre, scale = robust_scale(reference_rows)
    scaled = (reference_rows - centre) / scale
    distances = np.array([_knn_distance(scaled[i], scaled, k, exclude=i) for i in range(len(scaled))])
    return OodModel(centre, scale, scaled, k, np.sort(distances))


def ood_model_from_params(params: dict, reference_rows: np.ndarray) -> OodModel:
    centre = np.array([np.nan if v is None else v for v in params["centre"]], dtype=np.float64)
    scale = np.asarray(params["scale"], dtype=np.float64)
    scaled = (np.asarray(reference_rows, dtype=np.float64) - centre) / scale
    return OodModel(centre, scale, scaled, int(params["k"]), np.asarray(params["reference_distances"]))


def ood_score(model: OodModel, row: np.ndarray) -> tuple[float, float]:
    """(distance, percentile of the reference's own distances at or below it, 0-100)."""
    scaled = (np.asarray(row, dtype=np.float64) - model.centre) / model.scale
    distance = _knn_distance(scaled, model.reference, model.k)
    percentile = (
        100.0
        * np.searchsorted(model.reference_distances, distance, side="right")
        / len(model.reference_distances)
    )
    return distance, float(percentile)
