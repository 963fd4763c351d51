"""The monitoring summary of one cohort comparison, computed (by a Celery task) and cached.

A summary is keyed by (model version, current window, reference, slice). It is computed from the
database in bounded memory (monitoring.selectors) and stored in the Django cache for
MONITORING_CACHE_SECONDS (default 15 minutes): the dashboard only ever reads the cache, so its
pages cost the same for a day or a year of scores. The periodic task keeps the default views (the
last 7 days against the version's reference set, overall, per unit and per shift) warm; any other
view is computed on demand when first asked for.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from celery import signature
from django.conf import settings
from django.core.cache import cache
from django.db.models import Max
from django.utils import timezone

from common.timestamps import iso_utc
from engine import burden, drift, performance
from engine.tiers import TIER_NAMES_MILDEST_FIRST
from models_registry.models import ModelVersion
from models_registry.selectors import production_versions
from models_registry.serving import serving_model
from patients.actions import reason_labels
from patients.models import Prediction

from . import selectors, windows
from .selectors import Slice

log = logging.getLogger(__name__)

DEFAULT_WINDOW_DAYS = 7
CACHE_PREFIX = "monitoring:v1"


def cache_seconds() -> int:
    return int(getattr(settings, "MONITORING_CACHE_SECONDS", 900))


@dataclass(frozen=True)
class Comparison:
    """A current window against a reference (the version's reference set, or a past window)."""

    version_id: int
    start: datetime
    end: datetime
    where: str = "overall"
    reference: str = "reference"  # reference | window
    reference_start: datetime | None = None
    reference_end: datetime | None = None

    def as_json(self) -> dict:
        out = asdict(self)
        for key in ("start", "end", "reference_start", "reference_end"):
            out[key] = iso_utc(out[key])
        return out

    @classmethod
    def from_json(cls, data: dict) -> Comparison:
        data = dict(data)
        for key in ("start", "end", "reference_start", "reference_end"):
            data[key] = datetime.fromisoformat(data[key]) if data.get(key) else None
        return cls(**data)

    @property
    def cache_key(self) -> str:
        parts = "|".join(str(v) for v in self.as_json().values())
        return f"{CACHE_PREFIX}:summary:{self.version_id}:{hashlib.sha256(parts.encode()).hexdigest()[:32]}"


def default_window(version_id: int | None = None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The latest DEFAULT_WINDOW_DAYS days that have scores of the version: up to the hour after its
    newest score (never past the current hour). Each end is a whole hour, so a window and its cached
    summary stay the same until a score of a new hour arrives. A version that scored nothing in the
    last week opens on its last week of scores, not on an empty window."""
    now = now or timezone.now()
    newest = None
    if version_id is not None:
        newest = Prediction.objects.filter(model_version_id=version_id).aggregate(Max("scored_at"))[
            "scored_at__max"
        ]
    until = min(now, newest) if newest is not None else now
    end = until.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return end - timedelta(days=DEFAULT_WINDOW_DAYS), end


def summary_cached(comparison: Comparison) -> dict | None:
    return cache.get(comparison.cache_key)


# --- the version's reference set -----------------------------------------------------------------


def _reference_profile(version: ModelVersion) -> dict:
    """Per version (cached for a day, keyed by the bundle hash): the isotonic calibration of the
    reference set's expected risk to its labels (for CBPE), and mean |SHAP| of the reference set
    per slice (for attribution drift)."""
    key = f"{CACHE_PREFIX}:reference:{version.pk}:{version.bundle_sha256}"
    profile = cache.get(key)
    if profile is not None:
        return profile
    serving = serving_model(version)
    reference = serving.reference
    names = serving.feature_names
    label = version.spec["reference"]["label"]
    shap_values = np.abs(selectors.reference_shap(serving, names))
    slices = ["overall"]
    slices += (
        [f"unit:{u}" for u in sorted(reference["unit"].dropna().unique())] if "unit" in reference else []
    )
    slices += [f"shift:{s}" for s in ("day", "night")] if "shift" in reference else []
    mean_abs = {}
    for text in slices:
        mask = Slice.parse(text).reference_mask(reference)
        if mask.any():
            mean_abs[text] = {"mean": shap_values[mask].mean(axis=0).tolist(), "n": int(mask.sum())}
    profile = {
        "calibrator": performance.calibrator_fit(reference["expected_risk"], reference[label]),
        "mean_abs_shap": mean_abs,
    }
    cache.set(key, profile, 24 * 3600)
    return profile


# --- the summary ---------------------------------------------------------------------------------


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return (counts / total).round(6).tolist() if total else [0.0] * len(counts)


def _finite(value):
    """JSON has no NaN: not computable is None."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _performance_windows(data: windows.WindowData, calibrator: dict) -> dict:
    by_window: dict[str, list[tuple[float, bool | None]]] = {}
    for _, score, outcome, label in data.encounters.values():
        by_window.setdefault(label, []).append((score, outcome))
    everything = [pair for pairs in by_window.values() for pair in pairs]

    def one(pairs: list[tuple[float, bool | None]], window: str) -> dict:
        scores = np.array([s for s, _ in pairs], dtype=np.float64)
        labelled = [(s, o) for s, o in pairs if o is not None]
        realised = performance.performance(
            [s for s, _ in labelled], [float(o) for _, o in labelled], bootstrap=performance.BOOTSTRAP
        )
        estimate = performance.cbpe(scores, calibrator)
        return {"window": window, "encounters": len(pairs), "realised": realised, "estimate": estimate}

    return {
        "unit_of_analysis": "encounter (its latest score in the window)",
        "overall": one(everything, "all"),
        "windows": [one(by_window[w], w) for w in sorted(by_window)],
    }


@dataclass
class _Reference:
    """What a comparison compares against: a past window or the version's reference set."""

    frame: pd.DataFrame
    risk: np.ndarray
    n: int
    sampled: bool
    mean_abs_shap: np.ndarray
    shap_n: int
    label: str


def _reference_of(
    comparison: Comparison, version: ModelVersion, where: Slice, names: list[str], profile: dict
) -> _Reference:
    if comparison.reference == "window":
        window = windows.window_collect(
            version, comparison.reference_start, comparison.reference_end, where, risk_edges=np.array([])
        )
        shap, shap_n = selectors.mean_abs_shap(
            version, comparison.reference_start, comparison.reference_end, where, names
        )
        return _Reference(
            frame=windows.latest_per_encounter(window.sample)[names],
            risk=window.sample["__risk__"].to_numpy(),
            n=window.n,
            sampled=window.sampled,
            mean_abs_shap=shap,
            shap_n=shap_n,
            label=f"{comparison.reference_start:%Y-%m-%d %H:%M} to {comparison.reference_end:%Y-%m-%d %H:%M}",
        )
    reference = serving_model(version).reference
    mask = where.reference_mask(reference)
    entry = profile["mean_abs_shap"].get(str(where))
    return _Reference(
        frame=reference.loc[mask, names],
        risk=reference.loc[mask, "expected_risk"].to_numpy(dtype=np.float64),
        n=int(mask.sum()),
        sampled=False,
        mean_abs_shap=np.array(entry["mean"]) if entry else np.full(len(names), np.nan),
        shap_n=entry["n"] if entry else 0,
        label=f"{version} reference set",
    )


def _prediction_drift(ref: _Reference, current, risk_edges, version: ModelVersion, bucket: str) -> dict:
    """Risk drift (engine.drift.prediction_drift_from_counts) plus the histograms the chart draws."""
    tiers_total = {
        t: sum(c.get(t, 0) for c in current.tier_counts.values()) for t in TIER_NAMES_MILDEST_FIRST
    }
    prediction = drift.prediction_drift_from_counts(
        ref.risk,
        edges=risk_edges,
        current_counts=sum(current.risk_counts.values(), np.zeros(len(risk_edges) + 2)),
        current_sample=current.sample["__risk__"].to_numpy(),
        current_tiers=tiers_total,
        tier_high=version.tier_high,
        tier_medium=version.tier_medium,
        windows={
            label: (current.risk_counts[label], current.tier_counts[label]) for label in current.risk_counts
        },
    )
    if not current.n:
        prediction["tier_mix"]["current"] = dict.fromkeys(tiers_total)
    if not len(ref.risk):
        prediction["tier_mix"]["reference"] = dict.fromkeys(tiers_total)
    hist_edges = np.linspace(0, 1, selectors.RISK_HISTOGRAM_BINS + 1)
    prediction["histogram"] = {
        "edges": hist_edges.round(4).tolist(),
        "reference": _shares(np.histogram(np.clip(ref.risk, 0, 1), bins=hist_edges)[0]),
        "current": _shares(current.risk_histogram),
    }
    prediction["bucket"] = bucket
    return prediction


def _attribution_drift(ref: _Reference, cur_shap: np.ndarray, cur_shap_n: int, specs: list) -> dict:
    if ref.shap_n and cur_shap_n:
        names = [s.name for s in specs]
        attribution = drift.attribution_drift(names, ref.mean_abs_shap, cur_shap)
        labels = {s.name: s.label or s.name for s in specs}
        for row in attribution["features"]:
            row["label"] = labels[row["feature"]]  # charts name features as the pages do
        attribution.update(n_reference=ref.shap_n, n_current=cur_shap_n, available=True)
        return attribution
    return {
        "available": False,
        "n_reference": ref.shap_n,
        "n_current": cur_shap_n,
        "note": "No ready explanations in one of the cohorts yet.",
    }


THRESHOLDS = {
    "psi": [drift.PSI_MODERATE, drift.PSI_MAJOR],
    "ks": [drift.KS_MODERATE, drift.KS_MAJOR],
    "cramers_v": [drift.CRAMERS_V_MODERATE, drift.CRAMERS_V_MAJOR],
    "missing_change": [drift.MISSING_MODERATE, drift.MISSING_MAJOR],
    "p_value": drift.P_VALUE,
}


def _empty_note(
    comparison: Comparison, version: ModelVersion, where: Slice, n_current: int, n_reference: int
):
    """A sentence saying what is missing when a window has no scores (None when both have some)."""
    if not n_current:
        return selectors.empty_window_note(version, comparison.start, comparison.end, where)
    if comparison.reference == "window" and not n_reference:
        start, end = comparison.reference_start, comparison.reference_end
        return "Reference window: " + selectors.empty_window_note(version, start, end, where)
    return None


def summary_compute(*, comparison: Comparison) -> dict:
    """Compute one comparison's summary and store it in the cache; returns it."""
    started = time.perf_counter()
    version = ModelVersion.objects.select_related("registered_model").get(pk=comparison.version_id)
    where = Slice.parse(comparison.where)
    specs = selectors.feature_specs(version)
    names = [s.name for s in specs]
    bucket = selectors.bucket_of((comparison.end - comparison.start).total_seconds() / 86400)

    profile = _reference_profile(version)
    ref = _reference_of(comparison, version, where, names, profile)
    risk_edges = drift.quantile_edges(ref.risk)
    current = windows.window_collect(
        version, comparison.start, comparison.end, where, risk_edges=risk_edges, bucket=bucket
    )
    cur_frame = windows.latest_per_encounter(current.sample)[names]
    cur_shap, cur_shap_n = selectors.mean_abs_shap(version, comparison.start, comparison.end, where, names)
    groups, seconds = selectors.alerts_in(version, comparison.start, comparison.end, where)
    simulated = Prediction.objects.filter(
        model_version=version, scored_at__gte=comparison.start, scored_at__lt=comparison.end, simulated=True
    ).exists()

    summary = _finite(
        {
            "status": "ready",
            "comparison": comparison.as_json(),
            "version": {"id": version.pk, "name": version.registered_model.name, "version": version.version},
            "slice": str(where),
            "reference_label": ref.label,
            "n_reference": ref.n,
            "n_current": current.n,
            "sampled": {
                "reference": ref.sampled,
                "current": current.sampled,
                "sample_size": selectors.SAMPLE_SIZE,
            },
            "simulated_current": simulated,
            "empty_note": _empty_note(comparison, version, where, current.n, ref.n),
            "thresholds": THRESHOLDS,
            "features": drift.drift_table(ref.frame, cur_frame, specs),
            "distributions": {
                s.name: drift.distribution(ref.frame[s.name], cur_frame[s.name], s) for s in specs
            },
            "attribution": _attribution_drift(ref, cur_shap, cur_shap_n, specs),
            "prediction": _prediction_drift(ref, current, risk_edges, version, bucket),
            "performance": _performance_windows(current, profile["calibrator"]),
            "burden": {
                **burden.alert_burden(current.patient_days, groups, seconds),
                "reason_labels": reason_labels("dismiss"),
            },
            "computed_at": iso_utc(timezone.now()),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    cache.set(comparison.cache_key, summary, cache_seconds())
    return summary


def summary_request(*, comparison: Comparison) -> dict | None:
    """The cached summary, or None after queueing its computation (once, however often asked)."""
    summary = summary_cached(comparison)
    if summary is not None:
        return summary
    if cache.add(f"{comparison.cache_key}:queued", 1, timeout=300):
        # By name: the tasks module imports these services.
        signature("monitoring.tasks.monitoring_summary_task", args=(comparison.as_json(),)).delay()
    # With tasks executed in-process (the embedded default, tests) the summary is already there.
    return summary_cached(comparison)


def summary_invalidate(*, comparison: Comparison) -> None:
    cache.delete_many([comparison.cache_key, f"{comparison.cache_key}:queued"])


def default_comparisons(*, now: datetime | None = None, version_ids=None) -> list[Comparison]:
    """What the periodic task keeps warm: for every production version (or those of `version_ids`),
    the last 7 days against its reference set, overall, per unit scored in that window, and per shift."""
    out = []
    versions = production_versions()
    if version_ids is not None:
        versions = versions.filter(pk__in=version_ids)
    for version in versions:
        start, end = default_window(version.pk, now)
        units = (
            Prediction.objects.filter(model_version=version, scored_at__gte=start, scored_at__lt=end)
            .values_list("unit", flat=True)
            .distinct()
            .order_by("unit")
        )
        slices = ["overall", *[f"unit:{u}" for u in units], "shift:day", "shift:night"]
        out += [Comparison(version_id=version.pk, start=start, end=end, where=s) for s in slices]
    return out
