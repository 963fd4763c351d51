"""Drift statistics between a reference cohort and a current cohort. Plain numpy/pandas/scipy, no Django.

Values are model inputs as the model sees them: numbers, binary as 0/1, categorical as the index of
the category; NaN is "not measured" and is never imputed: it is its own bin in PSI and its share is
reported as the missingness change.

Severity (documented thresholds, the usual ones in model monitoring):

- PSI (quantile bins of the reference, missing as its own bin): < 0.10 stable, 0.10-0.25 moderate,
  >= 0.25 major (Siddiqi, Credit Risk Scorecards, 2006; the convention NannyML and Evidently use).
- Kolmogorov-Smirnov statistic D (numeric): >= 0.10 moderate, >= 0.20 major, only when p < 0.01.
- Chi-squared (binary, categorical), effect size Cramer's V: >= 0.10 moderate, >= 0.20 major,
  only when p < 0.01. (With thousands of rows any difference is "significant", so the p-value alone
  never raises severity: the effect size has to be large enough to matter.)
- Missingness: an absolute change in the share not measured >= 0.05 moderate, >= 0.15 major,
  only when Fisher's exact test of the two shares gives p < 0.01.

PSI on a small window is noise: see engine.psi for when a PSI is judged at all and when it is more
than sampling would give.

A drift table tests every feature at once, so each of its tests uses P_VALUE divided by the number
of features (Bonferroni): a table of unchanged features shows a false flag in about 1 window in 100.

A feature's severity is the worst of these; features are sorted by severity, then PSI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from engine.psi import bin_counts, level_counts, psi_from_counts, psi_min_rows, psi_p_value, quantile_edges
from engine.tiers import TIERS, tier_counts, tiers_of

PSI_MODERATE, PSI_MAJOR = 0.10, 0.25
KS_MODERATE, KS_MAJOR = 0.10, 0.20
CRAMERS_V_MODERATE, CRAMERS_V_MAJOR = 0.10, 0.20
MISSING_MODERATE, MISSING_MAJOR = 0.05, 0.15
P_VALUE = 0.01
# Why a statistic past its threshold leaves the feature stable: sampling alone often gives it.
NOISE_NOTE = "{} {:.3f} ≥ {:.2f}: within sampling noise (p = {:.2g}; counts below {:.2g}), not counted"
SEVERITIES = ("stable", "moderate", "major")
# Too few rows on either side for a statistic worth showing.
MIN_ROWS = 20


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: str = "numeric"  # numeric | binary | categorical
    label: str = ""
    unit: str = ""
    categories: Sequence[str] = field(default_factory=tuple)

    @property
    def discrete(self) -> bool:
        return self.kind in ("binary", "categorical")

    def level_names(self) -> list[str]:
        if self.kind == "binary":
            return ["false", "true"]
        return [str(c) for c in self.categories]


def _as_float(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def _psi_counts(ref: np.ndarray, cur: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """The reference's and the current cohort's PSI bin counts (missing bin last)."""
    if spec.discrete:
        levels = len(spec.level_names())
        return level_counts(ref, levels), level_counts(cur, levels)
    edges = quantile_edges(ref)
    return bin_counts(ref, edges), bin_counts(cur, edges)


# --- tests and distances -------------------------------------------------------------------------


def ks(reference, current) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov (statistic, p-value) on the measured values."""
    ref, cur = _as_float(reference), _as_float(current)
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if ref.size == 0 or cur.size == 0:
        return float("nan"), float("nan")
    result = stats.ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


def wasserstein(reference, current) -> float:
    """Earth mover's distance between the measured values, in the feature's unit."""
    ref, cur = _as_float(reference), _as_float(current)
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    return float(stats.wasserstein_distance(ref, cur))


def chi_squared(reference, current, levels: int) -> tuple[float, float, float]:
    """(chi-squared statistic, p-value, Cramer's V) of the 2 x levels table of measured values.

    Levels seen in neither cohort are dropped (a zero column has no expected count).
    """
    table = np.vstack([level_counts(reference, levels)[:-1], level_counts(current, levels)[:-1]])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0, 0.0
    statistic, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    n = table.sum()
    cramers_v = float(np.sqrt(statistic / (n * (min(table.shape) - 1))))
    return float(statistic), float(p_value), cramers_v


def missing_share(values) -> float:
    values = _as_float(values)
    return float(np.isnan(values).mean()) if values.size else float("nan")


def missing_p_value(reference, current) -> float:
    """Fisher's exact test of the shares not measured (two-sided p); 1.0 when neither has any."""
    ref, cur = _as_float(reference), _as_float(current)
    ref_missing, cur_missing = int(np.isnan(ref).sum()), int(np.isnan(cur).sum())
    if ref_missing + cur_missing == 0 or ref.size == 0 or cur.size == 0:
        return 1.0
    table = [[ref_missing, ref.size - ref_missing], [cur_missing, cur.size - cur_missing]]
    return float(stats.fisher_exact(table).pvalue)


def _grade(value: float, moderate: float, major: float) -> int:
    if value is None or not np.isfinite(value):
        return 0
    return 2 if value >= major else 1 if value >= moderate else 0


# --- per feature ---------------------------------------------------------------------------------


def distribution(reference, current, spec: FeatureSpec, bins: int = 30) -> dict:
    """What the overlay figure needs: shares per bin (common edges) or per level, and missing shares."""
    ref, cur = _as_float(reference), _as_float(current)
    out: dict = {
        "missing": {"reference": missing_share(ref), "current": missing_share(cur)},
        "n": {"reference": int(ref.size), "current": int(cur.size)},
    }
    if spec.discrete:
        levels = len(spec.level_names())
        r, c = level_counts(ref, levels)[:-1], level_counts(cur, levels)[:-1]
        out["kind"] = "levels"
        out["levels"] = spec.level_names()
        out["reference"] = (r / max(r.sum(), 1)).round(6).tolist()
        out["current"] = (c / max(c.sum(), 1)).round(6).tolist()
        return out
    measured = np.concatenate([ref[~np.isnan(ref)], cur[~np.isnan(cur)]])
    if measured.size == 0:
        out.update(kind="histogram", edges=[], reference=[], current=[])
        return out
    low, high = np.quantile(measured, [0.001, 0.999])
    if high <= low:
        low, high = float(measured.min()), float(measured.max()) + 1e-9
    edges = np.linspace(low, high, bins + 1)

    def shares(values: np.ndarray) -> list[float]:
        values = np.clip(values[~np.isnan(values)], low, high)
        counts, _ = np.histogram(values, bins=edges)
        return (counts / max(counts.sum(), 1)).round(6).tolist()

    out.update(kind="histogram", edges=edges.round(6).tolist(), reference=shares(ref), current=shares(cur))
    return out


def feature_drift(reference, current, spec: FeatureSpec, *, p_value: float = P_VALUE) -> dict:
    """Every statistic of one feature, with its severity and the reason for it. A statistic raises
    severity only when its p-value (PSI: the chance that sampling alone exceeds it) is below
    `p_value`."""
    ref, cur = _as_float(reference), _as_float(current)
    row: dict = {
        "feature": spec.name,
        "label": spec.label or spec.name,
        "unit": spec.unit,
        "kind": spec.kind,
        "n_reference": int(ref.size),
        "n_current": int(cur.size),
        "missing_reference": missing_share(ref),
        "missing_current": missing_share(cur),
        "psi": None,
        "ks": None,
        "ks_p": None,
        "chi2": None,
        "chi2_p": None,
        "cramers_v": None,
        "wasserstein": None,
        "missing_p": None,
        "psi_judged": False,  # enough rows for PSI to be judged (psi_min_rows on each side)
        "psi_min_rows": None,
        "psi_p": None,  # the chance that sampling alone gives this PSI (computed from PSI_MODERATE up)
        "notes": [],
    }
    row["missing_change"] = row["missing_current"] - row["missing_reference"]
    if ref.size < MIN_ROWS or cur.size < MIN_ROWS:
        row.update(severity="insufficient", severity_level=-1, reasons=["too few rows to compare"])
        return row
    reasons = _tests(ref, cur, spec, row, p_value) + _psi_grade(ref, cur, spec, row, p_value)
    row["missing_p"] = missing_p_value(ref, cur)
    if row["missing_p"] < p_value:
        reasons.append((_grade(abs(row["missing_change"]), MISSING_MODERATE, MISSING_MAJOR), "missingness"))
    level = max((grade for grade, _ in reasons), default=0)
    row["severity_level"] = level
    row["severity"] = SEVERITIES[level]
    row["reasons"] = [name for grade, name in reasons if grade == level and level > 0]
    return row


def _tests(
    ref: np.ndarray, cur: np.ndarray, spec: FeatureSpec, row: dict, p_value: float
) -> list[tuple[int, str]]:
    """KS (numeric) or chi-squared (discrete) into `row`; their grade when p < `p_value`."""
    if spec.discrete:
        row["chi2"], row["chi2_p"], row["cramers_v"] = chi_squared(ref, cur, len(spec.level_names()))
        if row["chi2_p"] < p_value:
            return [(_grade(row["cramers_v"], CRAMERS_V_MODERATE, CRAMERS_V_MAJOR), "Cramer's V")]
        if row["cramers_v"] is not None and row["cramers_v"] >= CRAMERS_V_MODERATE:
            row["notes"].append(
                NOISE_NOTE.format("Cramér's V", row["cramers_v"], CRAMERS_V_MODERATE, row["chi2_p"], p_value)
            )
        return []
    row["ks"], row["ks_p"] = ks(ref, cur)
    row["wasserstein"] = wasserstein(ref, cur)
    if row["ks_p"] is not None and np.isfinite(row["ks_p"]) and row["ks_p"] < p_value:
        return [(_grade(row["ks"], KS_MODERATE, KS_MAJOR), "KS")]
    if row["ks"] is not None and row["ks"] >= KS_MODERATE and row["ks_p"] is not None:
        row["notes"].append(NOISE_NOTE.format("KS D", row["ks"], KS_MODERATE, row["ks_p"], p_value))
    return []


def _psi_grade(
    ref: np.ndarray, cur: np.ndarray, spec: FeatureSpec, row: dict, p_value: float
) -> list[tuple[int, str]]:
    """PSI into `row`, with whether it could be judged; its grade when it is above sampling noise."""
    ref_counts, cur_counts = _psi_counts(ref, cur, spec)
    row["psi"] = psi_from_counts(ref_counts, cur_counts)
    row["psi_min_rows"] = psi_min_rows(ref_counts)
    row["psi_judged"] = min(ref.size, cur.size) >= row["psi_min_rows"]
    if not row["psi_judged"]:
        row["notes"].append(f"PSI: too few rows to judge (needs {row['psi_min_rows']:,} on each side)")
        return []
    if row["psi"] < PSI_MODERATE:
        return []  # too small to matter, however sure
    row["psi_p"] = psi_p_value(ref_counts, cur_counts, threshold=p_value)
    if row["psi_p"] >= p_value:
        row["notes"].append(NOISE_NOTE.format("PSI", row["psi"], PSI_MODERATE, row["psi_p"], p_value))
        return []  # within what sampling alone gives when nothing shifted
    return [(_grade(row["psi"], PSI_MODERATE, PSI_MAJOR), "PSI")]


def drift_table(reference: pd.DataFrame, current: pd.DataFrame, specs: Sequence[FeatureSpec]) -> list[dict]:
    """One row per feature (feature_drift), most severe first, then by PSI. The table tests every
    feature at once, so each test's p-value threshold is P_VALUE shared among them (Bonferroni)."""
    p_value = P_VALUE / max(len(specs), 1)
    rows = [feature_drift(reference[s.name], current[s.name], s, p_value=p_value) for s in specs]
    return sorted(rows, key=lambda r: (-r["severity_level"], -(r["psi"] or 0.0), r["feature"]))


# --- attribution drift ---------------------------------------------------------------------------


def attribution_drift(names: Sequence[str], reference_mean_abs, current_mean_abs, *, top_k: int = 10) -> dict:
    """Change in mean |SHAP| per feature and in the ranking of the features between two cohorts.

    Ranks are 1 = largest mean |SHAP|. Spearman's rho and Kendall's tau compare the whole ranking;
    `top_k_overlap` is the share of the reference's top k still in the current top k.
    """
    ref = _as_float(reference_mean_abs)
    cur = _as_float(current_mean_abs)
    ref_rank = stats.rankdata(-ref, method="min").astype(int)
    cur_rank = stats.rankdata(-cur, method="min").astype(int)
    rows = []
    for i, name in enumerate(names):
        rows.append(
            {
                "feature": name,
                "reference": float(ref[i]),
                "current": float(cur[i]),
                "change": float(cur[i] - ref[i]),
                "relative_change": float((cur[i] - ref[i]) / ref[i]) if ref[i] > 0 else None,
                "rank_reference": int(ref_rank[i]),
                "rank_current": int(cur_rank[i]),
                "rank_change": int(ref_rank[i] - cur_rank[i]),
            }
        )
    rows.sort(key=lambda r: r["rank_reference"])
    k = min(top_k, len(names))
    top_ref = {r["feature"] for r in rows[:k]}
    top_cur = {names[i] for i in np.argsort(-cur, kind="stable")[:k]}
    finite = np.isfinite(ref) & np.isfinite(cur)
    if finite.sum() >= 2 and np.ptp(ref[finite]) > 0 and np.ptp(cur[finite]) > 0:
        spearman = float(stats.spearmanr(ref[finite], cur[finite]).statistic)
        kendall = float(stats.kendalltau(ref[finite], cur[finite]).statistic)
    else:
        spearman = kendall = None
    return {
        "features": rows,
        "top_k": k,
        "top_k_overlap": len(top_ref & top_cur) / k if k else None,
        "spearman": spearman,
        "kendall": kendall,
    }


# --- prediction drift ----------------------------------------------------------------------------


def tier_mix(tier_counts: dict[str, int]) -> dict[str, float]:
    """Shares of each tier (engine.tiers.TIERS order), from counts; 0.0 each when there are none."""
    n = max(sum(tier_counts.values()), 1)
    return {t.value: tier_counts.get(t.value, 0) / n for t in TIERS}


def prediction_drift_from_counts(
    reference_risk,
    *,
    edges: np.ndarray,
    current_counts: np.ndarray,
    current_sample,
    current_tiers: dict[str, int],
    tier_high: float,
    tier_medium: float,
    windows: dict[str, tuple[np.ndarray, dict[str, int]]] | None = None,
) -> dict:
    """Risk distribution drift from what a streamed window keeps: PSI of the current risks' counts
    on the reference quantile bins (`edges`), KS against a sample of the current risks, and the tier
    mix, overall and per window (`windows`: label -> (bin counts, tier counts)).

    The one definition of prediction drift: prediction_drift (whole arrays) and the monitoring
    dashboard (rows streamed from the database) both end here.
    """
    ref = _as_float(reference_risk)
    ref_counts = bin_counts(ref, edges)
    statistic, p_value = ks(ref, _as_float(current_sample))
    out = {
        "psi": psi_from_counts(ref_counts, current_counts),
        "ks": statistic,
        "ks_p": p_value,
        "tier_mix": {
            "reference": tier_mix(tier_counts(tiers_of(ref, high=tier_high, medium=tier_medium))),
            "current": tier_mix(current_tiers),
        },
        "windows": [],
    }
    for label in sorted(windows or {}):
        counts, tiers = windows[label]
        out["windows"].append(
            {
                "window": str(label),
                "n": int(sum(tiers.values())),
                "psi": psi_from_counts(ref_counts, counts),
                "tier_mix": tier_mix(tiers),
            }
        )
    return out


def prediction_drift(
    reference_risk,
    current_risk,
    *,
    tier_high: float,
    tier_medium: float,
    current_windows=None,
) -> dict:
    """prediction_drift_from_counts over whole arrays of risks.

    `current_windows`: one label per current row (e.g. the day) for the over-time series.
    """
    ref, cur = _as_float(reference_risk), _as_float(current_risk)
    edges = quantile_edges(ref)

    def summary(risk: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
        return bin_counts(risk, edges), tier_counts(tiers_of(risk, high=tier_high, medium=tier_medium))

    windows = None
    if current_windows is not None:
        labels = np.asarray(current_windows)
        windows = {str(label): summary(cur[labels == label]) for label in set(labels.tolist())}
    counts, tiers = summary(cur)
    return prediction_drift_from_counts(
        ref,
        edges=edges,
        current_counts=counts,
        current_sample=cur,
        current_tiers=tiers,
        tier_high=tier_high,
        tier_medium=tier_medium,
        windows=windows,
    )
