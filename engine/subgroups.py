"""Per-subgroup model performance, calibration and alert burden (issue #18).

Everything here works on plain arrays aligned by position: ``y_true`` (0/1), ``risk`` (probabilities),
``groups`` (one label per patient, see :func:`assign_groups`) and tier thresholds such as
``{"high": 0.5, "medium": 0.25}``. A patient is alerted at tier ``t`` when ``risk >= thresholds[t]``, so
the figures for ``"medium"`` count every medium-or-high patient (the "alert" level).

Results are JSON-able dicts of one shape, shared by :func:`subgroup_metrics` and the monitoring functions
``subgroup_burden`` and ``subgroup_cbpe``::

    {"kind": ..., "thresholds": {...}, "overall": ENTRY, "groups": {label: ENTRY}, "disparity": {...}}

where ENTRY is ``{"too_few": False, "n": 812, "events": 97, "metrics": {"auroc": {"value": 0.81,
"ci_low": 0.77, "ci_high": 0.85}, ...}}`` or, for a group under the size/event floor, only
``{"too_few": True, "n": 31, "events": 2}``. Undefined figures are ``None``; never NaN.
The label-free monitoring figures (:func:`~engine.subgroup_flags.subgroup_burden`,
:func:`~engine.subgroup_flags.subgroup_cbpe`), the flags and the disparity sort live in
:mod:`engine.subgroup_flags`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from fairlearn.metrics import MetricFrame, equalized_odds_difference
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    roc_auc_score,
)

from engine.demographics import DEMOGRAPHIC_CATEGORIES, omb_category
from engine.subgroup_calibration import (  # re-exported: the card's and tests' one import
    _two_classes,
    calibration_intercept,
    calibration_slope,
    expected_calibration_error,
)
from engine.subgroup_shap import mean_abs_shap_intervals

__all__ = [
    "Subgroup",
    "assign_groups",
    "calibration_intercept",
    "calibration_slope",
    "expected_calibration_error",
    "subgroup_metrics",
]

NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class Subgroup:
    """How to split patients: ``column`` of the patient table, display ``label``, whether it is a
    ``protected`` characteristic, numeric ``bands`` (cut points) or ``value_labels`` for categories."""

    column: str
    label: str
    protected: bool = False
    bands: list[float] | None = None
    value_labels: dict[Any, str] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        return {"column": self.column, "label": self.label, "protected": self.protected}


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def band_labels(bands: Sequence[float]) -> list[str]:
    """Labels for ``bands=[18, 45, 65, 80]``: ``["<18", "18-44", "45-64", "65-79", "80+"]``.

    Each band includes its lower edge (45 falls in "45-64"). With non-integer cut points a band reads
    "2.5 to <4"."""
    cuts = list(bands)
    integer = all(float(c).is_integer() for c in cuts)
    labels = [f"<{_fmt(cuts[0])}"]
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        labels.append(f"{_fmt(lo)}-{_fmt(hi - 1)}" if integer else f"{_fmt(lo)} to <{_fmt(hi)}")
    labels.append(f"{_fmt(cuts[-1])}+")
    return labels


def _value_text(value: Any, value_labels: Mapping[Any, str] | None) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return NOT_RECORDED
    if value_labels and value in value_labels:
        return value_labels[value]
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a 0/1 column that picked up NaN is float; keep "0"/"1"
        if value_labels and value in value_labels:
            return value_labels[value]
    return str(value)


def assign_groups(values: pd.Series, spec: Subgroup) -> pd.Series:
    """Group label per patient (same index as ``values``), as an ordered categorical.

    Numeric columns with ``spec.bands`` are cut into bands (lower edge inclusive); other columns use
    ``spec.value_labels[value]`` or the value as text (floats that are whole numbers lose ".0").
    A race or ethnicity column without value labels is grouped by OMB category
    (engine.demographics), as monitoring groups posted patients. Missing values become
    ``"not recorded"``, ordered last."""
    values = pd.Series(values)
    if spec.column in DEMOGRAPHIC_CATEGORIES and not spec.value_labels and not spec.bands:
        values = values.map(lambda v: omb_category(v, spec.column))
    if spec.bands:
        cuts = sorted(float(b) for b in spec.bands)
        labels = band_labels(cuts)
        numeric = pd.to_numeric(values, errors="coerce")
        idx = np.searchsorted(cuts, numeric.to_numpy(dtype=float), side="right")
        out = [NOT_RECORDED if np.isnan(v) else labels[i] for v, i in zip(numeric, idx, strict=True)]
        order = labels
    else:
        out = [_value_text(v, spec.value_labels) for v in values]
        order = sorted({o for o in out if o != NOT_RECORDED})
    order = [*order, NOT_RECORDED] if NOT_RECORDED in out else order
    return pd.Series(
        pd.Categorical(out, categories=order, ordered=True), index=values.index, name=spec.column
    )


def _num(x: Any) -> float | None:
    """Plain float, or None for missing/NaN/inf."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _safe(func: Any) -> Any:
    """Call ``func`` on numpy arrays (scikit-learn validates Series much more slowly); NaN if undefined."""

    def wrapped(y: Any, p: Any) -> float:
        try:
            return float(func(np.asarray(y, dtype=int), np.asarray(p, dtype=float)))
        except (ValueError, ZeroDivisionError, FloatingPointError):
            return float("nan")

    return wrapped


def _share(hits: np.ndarray) -> float:
    """The share of True in ``hits``, NaN when it is empty: scikit-learn's ``recall_score`` (hits: the
    positives' alerts) and ``precision_score`` (hits: the alerted patients' events) with
    ``zero_division=np.nan``, to the last bit, at a hundredth of their cost per call (a window's
    bootstrap calls each thousands of times)."""
    return float(hits.mean()) if hits.size else float("nan")


def _metric_functions(thresholds: Mapping[str, float]) -> dict[str, Any]:
    """Metric callables (y_true, risk) for MetricFrame, keyed by the names used in results."""
    funcs: dict[str, Any] = {
        "auroc": lambda y, p: roc_auc_score(y, p) if _two_classes(y) else np.nan,
        "auprc": lambda y, p: average_precision_score(y, p) if y.sum() > 0 else np.nan,
        "brier": lambda y, p: brier_score_loss(y, p, labels=[0, 1]),
        "ece": expected_calibration_error,
        "calibration_in_large": lambda y, p: np.mean(p) - np.mean(y),
        "calibration_intercept": calibration_intercept,
        "calibration_slope": calibration_slope,
    }
    for tier, t in thresholds.items():
        funcs[f"sensitivity_{tier}"] = lambda y, p, t=t: _share(p[y == 1] >= t)
        funcs[f"ppv_{tier}"] = lambda y, p, t=t: _share(y[p >= t] == 1)
        funcs[f"alerts_per_100_{tier}"] = lambda y, p, t=t: 100.0 * np.mean(p >= t)
    return {k: _safe(f) for k, f in funcs.items()}


def _order(groups: pd.Series) -> list[str]:
    present = set(groups.astype(str))
    cats = [str(c) for c in groups.cat.categories] if isinstance(groups.dtype, pd.CategoricalDtype) else []
    return [c for c in cats if c in present] + sorted(present - set(cats))


def _prepare(risk: Any, groups: Any, y_true: Any = None) -> tuple[np.ndarray, pd.Series, np.ndarray | None]:
    p = np.asarray(risk, dtype=float)
    g = pd.Series(groups).reset_index(drop=True)
    if len(g) != len(p):
        raise ValueError(f"risk has {len(p)} rows but groups has {len(g)}")
    if np.isnan(p).any():
        raise ValueError("risk contains missing values")
    if y_true is None:
        return p, g, None
    y = np.asarray(y_true, dtype=float)
    if len(y) != len(p):
        raise ValueError(f"risk has {len(p)} rows but y_true has {len(y)}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y_true must be 0/1 for every row; drop rows whose outcome is not known yet")
    return p, g, y.astype(int)


def _alert_ratio(entries: Mapping[str, dict], thresholds: Mapping[str, float]) -> dict[str, Any]:
    """Per tier: min/max of alerts-per-100 over groups not marked too_few, naming both groups."""
    out: dict[str, Any] = {}
    for tier in thresholds:
        rates = {
            g: e["metrics"][f"alerts_per_100_{tier}"]["value"]
            for g, e in entries.items()
            if not e["too_few"] and e["metrics"][f"alerts_per_100_{tier}"]["value"] is not None
        }
        if len(rates) < 2:
            out[tier] = {"ratio": None, "lowest": None, "highest": None, "groups_compared": sorted(rates)}
            continue
        lo, hi = min(rates, key=rates.get), max(rates, key=rates.get)
        ratio = rates[lo] / rates[hi] if rates[hi] > 0 else None
        out[tier] = {
            "ratio": _num(ratio),
            "lowest": lo,
            "lowest_alerts_per_100": rates[lo],
            "highest": hi,
            "highest_alerts_per_100": rates[hi],
            "groups_compared": list(rates),
        }
    return out


def _metric_frame(
    y: np.ndarray,
    p: np.ndarray,
    g: np.ndarray,
    thresholds: Mapping[str, float],
    *,
    n_boot: int,
    random_state: int,
) -> MetricFrame:
    """fairlearn's MetricFrame of the metric functions by group, with bootstrap 95% intervals
    (none with ``n_boot`` 0)."""
    with (
        warnings.catch_warnings(),
        sklearn.config_context(assume_finite=True, skip_parameter_validation=True),
    ):
        warnings.simplefilter("ignore")
        return MetricFrame(
            metrics=_metric_functions(thresholds),
            y_true=y,
            y_pred=p,
            sensitive_features=pd.Series(g, name="group"),
            n_boot=n_boot or None,
            ci_quantiles=[0.025, 0.975] if n_boot else None,
            random_state=random_state,
        )


def _entries(mf: MetricFrame, order: list[str], g, p, y, shap, feature_names, floor) -> tuple[dict, dict]:
    """(overall entry, group -> entry) from the MetricFrame's figures and intervals (arguments: _entry's)."""
    by_group = mf.by_group
    if mf.n_boot:
        (lo_g, hi_g), (lo_o, hi_o) = mf.by_group_ci, mf.overall_ci
    else:  # no bootstrap: intervals undefined (None)
        lo_g = hi_g = by_group * np.nan
        lo_o = hi_o = mf.overall * np.nan
    overall = _entry(np.ones(len(p), bool), (mf.overall, lo_o, hi_o), p, y, shap, feature_names, floor)
    entries = {
        k: _entry(g == k, (by_group.loc[k], lo_g.loc[k], hi_g.loc[k]), p, y, shap, feature_names, floor)
        for k in order
    }
    return overall, entries


def subgroup_metrics(
    y_true: Any,
    risk: Any,
    groups: Any,
    thresholds: Mapping[str, float],
    *,
    n_boot: int = 200,
    random_state: int = 0,
    min_size: int = 50,
    min_events: int = 10,
    shap: Any = None,
    feature_names: Sequence[str] | None = None,
    spec: Subgroup | None = None,
) -> dict[str, Any]:
    """Discrimination, calibration and tier performance per subgroup and overall, with bootstrap 95%
    intervals, plus cross-group disparity.

    Figures come from one fairlearn ``MetricFrame`` over scikit-learn metrics (``roc_auc_score``,
    ``average_precision_score``, ``brier_score_loss``; sensitivity and PPV equal ``recall_score`` and
    ``precision_score``) and the calibration functions above; intervals are its percentile bootstrap
    (2.5%, 97.5%) of ``n_boot`` resamples of all rows (group sizes vary between resamples; resamples
    where a figure is undefined are skipped). Groups with ``n < min_size`` or ``events < min_events``
    are reported as too_few.
    ``disparity`` holds, per tier, fairlearn's ``equalized_odds_difference`` (worst of TPR and FPR
    gaps between groups) and the alert-rate ratio, both over groups that are not too_few.
    With ``shap`` (n x features) each reported entry also gets ``mean_abs_shap`` by feature and its
    ``mean_abs_shap_ci`` ({feature: {"ci_low", "ci_high"}}, engine.subgroup_shap)."""
    if y_true is None:
        raise ValueError("subgroup_metrics needs outcomes; use subgroup_burden / subgroup_cbpe before then")
    p, g, y = _prepare(risk, groups, y_true)
    order = _order(g)
    g = g.astype(str).to_numpy()
    mf = _metric_frame(y, p, g, thresholds, n_boot=n_boot, random_state=random_state)
    if shap is not None:
        shap = np.abs(np.asarray(shap, dtype=float))
        feature_names = list(feature_names or [f"feature_{i}" for i in range(shap.shape[1])])
    overall, entries = _entries(mf, order, g, p, y, shap, feature_names, (min_size, min_events))
    if shap is not None:  # the same resamples as the MetricFrame's intervals
        cis = mean_abs_shap_intervals(shap, g, order, feature_names, n_boot=n_boot, random_state=random_state)
        for entry, ci in zip([overall, *entries.values()], [cis[0], *cis[1].values()], strict=True):
            if "mean_abs_shap" in entry:
                entry["mean_abs_shap_ci"] = ci
    big = np.isin(g, [k for k, e in entries.items() if not e["too_few"]])
    eod = _equalized_odds(y[big], p[big], g[big], thresholds)
    return {
        "kind": "performance",
        "subgroup": spec.as_dict() if spec else None,
        "thresholds": {k: float(v) for k, v in thresholds.items()},
        "settings": {
            "n_boot": n_boot,
            "random_state": random_state,
            "min_size": min_size,
            "min_events": min_events,
        },
        "overall": overall,
        "groups": entries,
        "disparity": {
            "equalized_odds_difference": eod,
            "alert_rate_ratio": _alert_ratio(entries, thresholds),
        },
    }


def _entry(
    mask: np.ndarray,
    figures: tuple[pd.Series, pd.Series, pd.Series],
    p: np.ndarray,
    y: np.ndarray,
    shap: np.ndarray | None,
    feature_names: list[str] | None,
    floor: tuple[int, int],
) -> dict[str, Any]:
    """One group's (or the overall) ENTRY: too_few under the size/event floor, else its figures with
    their intervals (MetricFrame's values, lower and upper quantiles) and mean |SHAP| by feature."""
    n, events = int(mask.sum()), int(y[mask].sum())
    if n < floor[0] or events < floor[1]:
        return {"too_few": True, "n": n, "events": events}
    values, lows, highs = figures
    metrics = {"mean_risk": {"value": float(p[mask].mean())}, "event_rate": {"value": float(y[mask].mean())}}
    for m in values.index:
        metrics[m] = {"value": _num(values[m]), "ci_low": _num(lows[m]), "ci_high": _num(highs[m])}
    out: dict[str, Any] = {"too_few": False, "n": n, "events": events, "metrics": metrics}
    if shap is not None:
        out["mean_abs_shap"] = dict(zip(feature_names, map(float, shap[mask].mean(axis=0)), strict=True))
    return out


def _equalized_odds(
    y: np.ndarray, p: np.ndarray, g: np.ndarray, thresholds: Mapping[str, float]
) -> dict[str, float | None]:
    """fairlearn's equalized_odds_difference per tier over the given rows; None with under 2 groups."""
    eod: dict[str, float | None] = {}
    for tier, t in thresholds.items():
        eod[tier] = None
        if len(set(g)) >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                eod[tier] = _num(equalized_odds_difference(y, p >= t, sensitive_features=g))
    return eod
