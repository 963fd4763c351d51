"""Uncertainty of a risk: calibration, a calibrated interval, a conformal outcome set, and an
out-of-distribution check. Plain numpy (and numba), no Django.

Everything is fitted on the version's labelled reference set, split in two seeded halves
stratified by the label: the *fit* half fits, the *check* half measures (the coverage stored with
the profile is measured on patients the fit never saw).

- Binned calibration: quantile bins of the risk on the fit half; each bin's observed event rate
  with a Wilson 95% interval and its size ("of reference patients scored 0.62-0.80, 68% (61-74%)
  died within 30 days").
- Venn-Abers interval [low, high] around the risk (inductive Venn-Abers predictor on the fit half):
  one of the two ends is a calibrated probability, so a wide interval says calibration data are thin
  at this risk. Both ends at every position a risk can take are worked out once per version
  (`venn_abers_table`), so a patient's interval is a look-up equal to the two isotonic refits.
- Split-conformal outcome set at `1 - alpha` (default 90%): the outcomes ({died}, {survived}, or both)
  that cannot be excluded. Its coverage on the check half is measured and stored.
- Out-of-distribution: the mean distance to the k nearest reference patients in robust-scaled
  feature space, over the features both patients have measured, as a percentile of the same
  (leave-one-out) distance among reference patients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from sklearn.isotonic import IsotonicRegression

from engine import neighbours

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
    The reference (two scikit-learn fits per call): `VennAbersTable` answers the same in a look-up.
    """
    x = np.append(np.asarray(cal_risks, dtype=np.float64), risk)
    ends = []
    for label in (0.0, 1.0):
        y = np.append(np.asarray(cal_labels, dtype=np.float64), label)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
        ends.append(float(iso.predict([risk])[0]))
    return ends[0], ends[1]


# scikit-learn's isotonic regression pools risks closer than this to the first of their run.
_POOL_EPS = float(np.finfo(np.float64).resolution)


@numba.njit(cache=True)
def _pooled(x, y, eps):
    """Distinct risks as scikit-learn pools them (x sorted): (first risk, count, label sum) per run."""
    first, count, total = np.empty(x.size), np.zeros(x.size), np.zeros(x.size)
    m = -1
    for j in range(x.size):
        if m < 0 or x[j] - first[m] >= eps:
            m += 1
            first[m] = x[j]
        count[m] += 1.0
        total[m] += y[j]
    return first[: m + 1], count[: m + 1], total[: m + 1]


@numba.njit(cache=True)
def _venn_abers_ends(count, total):
    """(p0, p1) at each position a new risk can take: `between[i]` below the i-th distinct risk
    (row 0: below all, row m: above all), `equal[i]` equal to it.

    The isotonic fit at the new patient is the slope of the greatest convex minorant of the
    cumulative sum diagram over the patient's own stretch: the lower bridge between the hull of
    the points left of it and the hull of those right of it, shifted by the patient (1, label).
    Prefix and suffix hulls are kept as back-links (Graham scans), so every position walks out
    from its gap only as far as its bridge's ends: exact, and no refit per position.
    """
    m = count.size
    cx, cy = np.zeros(m + 1), np.zeros(m + 1)
    for j in range(m):
        cx[j + 1], cy[j + 1] = cx[j] + count[j], cy[j] + total[j]
    left, right = np.full(m + 1, -1), np.full(m + 1, -1)
    stack, top = np.empty(m + 1, dtype=np.int64), -1
    for j in range(m + 1):  # lower hulls of the prefixes, left to right
        while top >= 1 and _cross(cx, cy, stack[top - 1], stack[top], j) <= 0:
            top -= 1
        left[j] = stack[top] if top >= 0 else -1
        top += 1
        stack[top] = j
    top = -1
    for j in range(m, -1, -1):  # lower hulls of the suffixes, right to left
        while top >= 1 and _cross(cx, cy, stack[top - 1], stack[top], j) >= 0:
            top -= 1
        right[j] = stack[top] if top >= 0 else -1
        top += 1
        stack[top] = j
    between, equal = np.empty((m + 1, 2)), np.empty((m, 2))
    for label in range(2):
        for p in range(m + 1):
            between[p, label] = _bridge(cx, cy, left, right, p, p, float(label))
        for j in range(m):
            equal[j, label] = _bridge(cx, cy, left, right, j, j + 1, float(label))
    return np.minimum(np.maximum(between, 0.0), 1.0), np.minimum(np.maximum(equal, 0.0), 1.0)


@numba.njit(inline="always")
def _cross(cx, cy, o, a, b):
    return (cx[a] - cx[o]) * (cy[b] - cy[o]) - (cy[a] - cy[o]) * (cx[b] - cx[o])


@numba.njit(cache=True)
def _bridge(cx, cy, left, right, a, b, label):
    """Slope of the lower bridge from the hull ending at point a to the hull starting at point b
    shifted by (1, label). Counts and label sums are integers, so every comparison is exact."""
    moved = True
    while moved:
        moved = False
        bx, by = cx[b] + 1.0, cy[b] + label
        while left[a] >= 0:
            c = left[a]
            if (cy[a] - cy[c]) * (bx - cx[a]) > (by - cy[a]) * (cx[a] - cx[c]):
                a, moved = c, True
            else:
                break
        while right[b] >= 0:
            c = right[b]
            if (cy[c] + label - cy[a]) * (bx - cx[a]) < (by - cy[a]) * (cx[c] + 1.0 - cx[a]):
                b, moved = c, True
                bx, by = cx[b] + 1.0, cy[b] + label
            else:
                break
    return (cy[b] + label - cy[a]) / (cx[b] + 1.0 - cx[a])


@dataclass(frozen=True)
class VennAbersTable:
    """The (p0, p1) ends of every position a new risk can take among a calibration set, built once
    per version: a query is a binary search and a look-up, equal to `venn_abers` (to ~1e-15)."""

    risks: np.ndarray  # distinct calibration risks (pooled as scikit-learn pools them), ascending
    counts: np.ndarray  # patients at each
    events: np.ndarray  # their label sum
    between: np.ndarray  # (m + 1, 2): below risks[i], row m above all
    equal: np.ndarray  # (m, 2): at risks[i]
    values: np.ndarray  # every distinct calibration risk, unpooled
    cal_risks: np.ndarray
    cal_labels: np.ndarray


def venn_abers_table(cal_risks: np.ndarray, cal_labels: np.ndarray) -> VennAbersTable:
    x = np.asarray(cal_risks, dtype=np.float64)
    y = np.asarray(cal_labels, dtype=np.float64)
    order = np.lexsort((y, x))
    risks, counts, events = _pooled(x[order], y[order], _POOL_EPS)
    between, equal = _venn_abers_ends(counts, events)
    return VennAbersTable(risks, counts, events, between, equal, np.unique(x), x, y)


def venn_abers_many(table: VennAbersTable, risks: np.ndarray) -> np.ndarray:
    """(n, 2) Venn-Abers ends (p0, p1), one row per risk.

    A risk within 1e-15 of a calibration risk that does not start its pooled run would change how
    scikit-learn pools the runs: such a risk (practically never seen) is answered by the reference.
    """
    risks = np.asarray(risks, dtype=np.float64).reshape(-1)
    i = np.searchsorted(table.risks, risks)
    ends = table.between[i]
    at = i < table.risks.size
    at[at] = table.risks[i[at]] == risks[at]
    ends[at] = table.equal[i[at]]
    finite = np.isfinite(risks)
    values = np.concatenate(([-np.inf], table.values, [np.inf]))
    v = np.searchsorted(values, np.where(finite, risks, 0.0))  # values[v - 1] < risk <= values[v]
    clear = finite & (risks - values[v - 1] >= _POOL_EPS) & (values[v] - risks >= _POOL_EPS)
    for r in np.flatnonzero(~(at | clear)):
        ends[r] = venn_abers(table.cal_risks, table.cal_labels, float(risks[r]))
    return ends


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


def ood_fit(reference_rows: np.ndarray, k: int = 10) -> OodModel:
    reference_rows = np.asarray(reference_rows, dtype=np.float64)
    centre, scale = robust_scale(reference_rows)
    scaled = (reference_rows - centre) / scale
    distances = neighbours.knn_distances(scaled, scaled, k, leave_one_out=True)
    return OodModel(centre, scale, scaled, k, np.sort(distances))


def ood_model_from_params(params: dict, reference_rows: np.ndarray) -> OodModel:
    centre = np.array([np.nan if v is None else v for v in params["centre"]], dtype=np.float64)
    scale = np.asarray(params["scale"], dtype=np.float64)
    scaled = (np.asarray(reference_rows, dtype=np.float64) - centre) / scale
    return OodModel(centre, scale, scaled, int(params["k"]), np.asarray(params["reference_distances"]))


def ood_scores(model: OodModel, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distances, percentiles of the reference's own distances at or below each, 0-100), per row."""
    scaled = (np.atleast_2d(np.asarray(rows, dtype=np.float64)) - model.centre) / model.scale
    distance = neighbours.knn_distances(scaled, model.reference, model.k)
    below = np.searchsorted(model.reference_distances, distance, side="right")
    return distance, 100.0 * below / len(model.reference_distances)


def ood_score(model: OodModel, row: np.ndarray) -> tuple[float, float]:
    """(distance, percentile of the reference's own distances at or below it, 0-100)."""
    distance, percentile = ood_scores(model, row)
    return float(distance[0]), float(percentile[0])
