"""Reads for the monitoring dashboard: a cohort (model version x time window x slice) streamed from the
database in chunks into bounded aggregates, never every row at once.

A slice is "overall", "unit:<code>" or "shift:day|night"; the day shift is 07:00-18:59 in
settings.HOSPITAL_TIME_ZONE (UTC when the setting is absent), as in the cohort SHAP summaries.

What a window keeps while its rows stream past (memory bounded by the sample size, not the rows):
- exact counts: rows, rows not measured per feature, risk counts per time bucket in the reference's
  risk quantile bins, tier counts per time bucket, patient-days per unit;
- a bounded uniform sample (bottom-k by a hash of the prediction id, so the same rows always give
  the same sample) of the feature values and risks, on which KS, chi-squared, Wasserstein, PSI and
  the distribution overlays are computed when the window has more rows than the sample holds;
- per encounter its latest score in the window with its outcome, when known (performance).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import ExtractHour

from clinician_ui.models import AlertAction
from explanations import core
from explanations.models import Alert, Explanation, Prediction
from models_registry.models import ModelVersion

from . import drift

DAY_SHIFT = (7, 18)  # first and last hour of the day shift, inclusive
SAMPLE_SIZE = 50_000
CHUNK_SIZE = 5_000
RISK_HISTOGRAM_BINS = 20


def hospital_time_zone() -> ZoneInfo:
    return ZoneInfo(getattr(settings, "HOSPITAL_TIME_ZONE", None) or "UTC")


@dataclass(frozen=True)
class Slice:
    kind: str  # overall | unit | shift
    value: str = ""

    @classmethod
    def parse(cls, text: str | None) -> Slice:
        """'overall', 'unit:MICU', 'shift:day'; raises ValueError naming what is wrong."""
        text = (text or "overall").strip()
        if text == "overall":
            return cls("overall")
        kind, _, value = text.partition(":")
        if kind == "unit" and value:
            return cls("unit", value)
        if kind == "shift" and value in ("day", "night"):
            return cls("shift", value)
        raise ValueError("Expected 'overall', 'unit:<unit code>' or 'shift:day' / 'shift:night'.")

    def __str__(self) -> str:
        return "overall" if self.kind == "overall" else f"{self.kind}:{self.value}"

    def reference_mask(self, frame: pd.DataFrame) -> np.ndarray:
        if self.kind == "overall":
            return np.ones(len(frame), dtype=bool)
        if self.kind not in frame:
            return np.zeros(len(frame), dtype=bool)
        return (frame[self.kind] == self.value).to_numpy()


def feature_specs(version: ModelVersion) -> list[drift.FeatureSpec]:
    return [
        drift.FeatureSpec(
            name=f.name, kind=f.kind, label=f.label, unit=f.unit, categories=tuple(f.categories or ())
        )
        for f in version.input_features()
    ]


def predictions_in(version: ModelVersion, start: datetime, end: datetime, where: Slice) -> QuerySet:
    queryset = Prediction.objects.filter(model_version=version, scored_at__gte=start, scored_at__lt=end)
    if where.kind == "unit":
        queryset = queryset.filter(unit=where.value)
    elif where.kind == "shift":
        queryset = queryset.annotate(local_hour=ExtractHour("scored_at", tzinfo=hospital_time_zone()))
        day = {"local_hour__gte": DAY_SHIFT[0], "local_hour__lte": DAY_SHIFT[1]}
        queryset = queryset.filter(**day) if where.value == "day" else queryset.exclude(**day)
    return queryset


def bucket_of(span_days: float) -> str:
    """Time buckets of the over-time series: days for up to ~6 weeks, weeks beyond."""
    return "day" if span_days <= 45 else "week"


def _bucket_labels(times: pd.Series, bucket: str) -> np.ndarray:
    local = pd.to_datetime(times, utc=True).dt.tz_convert(hospital_time_zone())
    days = local.dt.tz_localize(None).dt.normalize()
    if bucket == "week":
        days = days - pd.to_timedelta(days.dt.weekday, unit="D")
    return days.dt.strftime("%Y-%m-%d").to_numpy()


def _priority(ids: np.ndarray) -> np.ndarray:
    """splitmix64 of the prediction id: a fixed pseudo-random order for bottom-k sampling."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def encode_column(values: list, spec: drift.FeatureSpec) -> np.ndarray:
    """Stored payload values (text from the JSON) as model inputs; None stays NaN (not measured)."""
    series = pd.Series(values, dtype=object)
    if spec.kind == "categorical":
        index = {str(c): float(i) for i, c in enumerate(spec.categories)}
        return series.map(index).to_numpy(dtype=np.float64, na_value=np.nan)
    if spec.kind == "binary":
        truth = {"1": 1.0, "0": 0.0, "true": 1.0, "false": 0.0, "True": 1.0, "False": 0.0}
        return series.map(truth).to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass
class WindowData:
    """A streamed window's bounded aggregates (see the module docstring)."""

    names: list[str]
    n: int = 0
    missing: np.ndarray | None = None
    sample: pd.DataFrame | None = None
    risk_counts: dict[str, np.ndarray] = field(default_factory=dict)
    tier_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    risk_histogram: np.ndarray | None = None
    patient_days: dict[str, set] = field(default_factory=dict)
    encounters: dict[int, tuple] = field(default_factory=dict)

    @property
    def sampled(self) -> bool:
        return self.sample is not None and len(self.sample) < self.n


def window_collect(
    version: ModelVersion,
    start: datetime,
    end: datetime,
    where: Slice,
    *,
    risk_edges: np.ndarray,
    bucket: str = "day",
    sample_size: int = SAMPLE_SIZE,
    chunk_size: int = CHUNK_SIZE,
) -> WindowData:
    """Stream one window's predictions in chunks of `chunk_size` into WindowData."""
    specs = feature_specs(version)
    names = [s.name for s in specs]
    columns = {f"feature_{i}": KT(f"features__{name}__value") for i, name in enumerate(names)}
    rows = (
        predictions_in(version, start, end, where)
        .annotate(**columns)
        .values_list(
            "id",
            "scored_at",
            "risk",
            "tier",
            "unit",
            "patient_id",
            "encounter_id",
            "encounter__outcome__outcome",
            *columns,
        )  # fmt: skip
        .iterator(chunk_size=chunk_size)
    )
    data = WindowData(names=names, missing=np.zeros(len(names), dtype=np.int64))
    data.risk_histogram = np.zeros(RISK_HISTOGRAM_BINS, dtype=np.int64)
    hist_edges = np.linspace(0, 1, RISK_HISTOGRAM_BINS + 1)
    sample_priority = np.empty(0, dtype=np.uint64)
    sample_values = np.empty((0, len(names) + 1), dtype=np.float64)
    tz = hospital_time_zone()
    while chunk := list(itertools.islice(rows, chunk_size)):
        frame = pd.DataFrame.from_records(
            chunk,
            columns=["id", "scored_at", "risk", "tier", "unit", "patient", "encounter", "outcome", *columns],
        )
        values = np.column_stack(
            [encode_column(frame[c].tolist(), s) for c, s in zip(columns, specs, strict=True)]
            + [frame["risk"].to_numpy(dtype=np.float64)]
        )
        data.n += len(frame)
        data.missing += np.isnan(values[:, :-1]).sum(axis=0)
        risk = values[:, -1]
        data.risk_histogram += np.histogram(np.clip(risk, 0, 1), bins=hist_edges)[0]
        labels = _bucket_labels(frame["scored_at"], bucket)
        for label in np.unique(labels):
            mask = labels == label
            counts = drift.bin_counts(risk[mask], risk_edges)
            data.risk_counts[label] = data.risk_counts.get(label, 0) + counts
            tiers = data.tier_counts.setdefault(label, {"low": 0, "medium": 0, "high": 0})
            for tier, count in frame.loc[mask, "tier"].value_counts().items():
                tiers[tier] = tiers.get(tier, 0) + int(count)
        local_days = (
            pd.to_datetime(frame["scored_at"], utc=True).dt.tz_convert(tz).dt.strftime("%Y-%m-%d").to_numpy()
        )
        for unit, patient, day in zip(frame["unit"], frame["patient"], local_days, strict=True):
            data.patient_days.setdefault(unit, set()).add((patient, day))
        with_encounter = frame[frame["encounter"].notna()]
        for encounter, scored_at, score, outcome, label in zip(
            with_encounter["encounter"],
            with_encounter["scored_at"],
            with_encounter["risk"],
            with_encounter["outcome"],
            labels[frame["encounter"].notna().to_numpy()],
            strict=True,
        ):
            seen = data.encounters.get(encounter)
            if seen is None or scored_at > seen[0]:
                data.encounters[encounter] = (scored_at, float(score), outcome, label)
        # Bottom-k merge: the sample of the rows so far is the k smallest priorities.
        sample_priority = np.concatenate([sample_priority, _priority(frame["id"].to_numpy())])
        sample_values = np.vstack([sample_values, values])
        if len(sample_priority) > sample_size:
            keep = np.argpartition(sample_priority, sample_size)[:sample_size]
            sample_priority, sample_values = sample_priority[keep], sample_values[keep]
    data.sample = pd.DataFrame(sample_values, columns=[*names, "__risk__"])
    return data


# --- attribution ---------------------------------------------------------------------------------


def current_mean_abs_shap(predictions: QuerySet, names: list[str]) -> tuple[np.ndarray, int]:
    """Mean |SHAP| per input feature over the ready explanations of `predictions`, and their count.

    On PostgreSQL the sums are taken in the database (jsonb_array_elements), so no explanation
    row leaves it; elsewhere the contributions are streamed in chunks.
    """
    ids = predictions.values("id")
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    if connection.vendor == "postgresql":
        sub_sql, sub_params = ids.query.sql_with_params()
        table = Explanation._meta.db_table
        # Only the table name (from the model) and Django's own compiled subquery are interpolated;
        # every value is a query parameter.
        sql = (
            "SELECT elem->>'name', count(*), sum(abs((elem->>'shap')::double precision)) "  # noqa: S608
            f"FROM {table} e CROSS JOIN LATERAL jsonb_array_elements(e.contributions) elem "
            f"WHERE e.status = %s AND e.prediction_id IN ({sub_sql}) GROUP BY 1"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [Explanation.Status.READY, *sub_params])
            for name, count, total in cursor.fetchall():
                sums[name], counts[name] = float(total), int(count)
    else:
        rows = Explanation.objects.filter(status=Explanation.Status.READY, prediction_id__in=ids).values_list(
            "contributions", flat=True
        )
        for contributions in rows.iterator(chunk_size=CHUNK_SIZE):
            for entry in contributions or []:
                sums[entry["name"]] = sums.get(entry["name"], 0.0) + abs(float(entry["shap"]))
                counts[entry["name"]] = counts.get(entry["name"], 0) + 1
    n = max(counts.values(), default=0)
    means = np.array([sums.get(n_, 0.0) / counts[n_] if counts.get(n_) else np.nan for n_ in names])
    return means, n


def reference_shap(serving, names: list[str]) -> np.ndarray:
    """SHAP values of the version's reference set (log-odds), computed with the serving explainer."""
    rows = serving.model.prepare(serving.reference[names].to_numpy(dtype=np.float64))
    return core.explain(serving.explainer, rows).values


# --- alert burden --------------------------------------------------------------------------------


def alerts_in(
    version: ModelVersion, start: datetime, end: datetime, where: Slice
) -> tuple[list[dict], list[float]]:
    """The cohort's alerts counted in the database by (unit, latest action, latest reason), and the
    seconds from first showing to the first decision of each alert someone has acted on."""
    predictions = predictions_in(version, start, end, where).values("id")
    latest = AlertAction.objects.filter(alert=OuterRef("pk")).order_by("-acted_at", "-id")
    first = AlertAction.objects.filter(alert=OuterRef("pk")).order_by("acted_at", "id")
    alerts = Alert.objects.filter(prediction_id__in=predictions).annotate(
        latest_action=Subquery(latest.values("action")[:1]),
        latest_reason=Subquery(latest.values("reason")[:1]),
        first_seconds=Subquery(first.values("seconds_to_decision")[:1]),
    )
    groups = list(
        alerts.values("unit", "latest_action", "latest_reason").annotate(n=Count("id")).order_by("unit")
    )
    seconds = alerts.filter(first_seconds__isnull=False).values_list("first_seconds", flat=True)
    return groups, [float(s) for s in seconds.iterator(chunk_size=CHUNK_SIZE)]
