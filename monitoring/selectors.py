"""Reads for the monitoring dashboard: a cohort (model version x time window x slice) streamed from the
database in chunks into bounded aggregates, never every row at once.

A slice is "overall", "unit:<code>" or "shift:day|night"; the day shift is 07:00-18:59 in
settings.HOSPITAL_TIME_ZONE (UTC when the setting is absent), as in the cohort SHAP summaries.

What a window keeps (memory bounded by the sample size, not the rows):
- exact counts: rows, rows not measured per feature (on PostgreSQL estimated from the sample when
  the window has more rows than the sample, see below), risk counts per time bucket in the
  reference's risk quantile bins, tier counts per time bucket, patient-days per unit;
- a bounded uniform sample (bottom-k by a hash of the prediction id, so the same rows always give
  the same sample) of the feature values and risks, on which KS, chi-squared, Wasserstein, PSI and
  the distribution overlays are computed when the window has more rows than the sample holds;
- per encounter its latest score in the window with its outcome, when known (performance).

On PostgreSQL the counts are GROUP BY queries and the sample is chosen in SQL (the window's ids
ordered by hashint8(id), LIMIT k): only the k sampled rows' feature values leave the database, so a
window of a year costs about what a window of k rows costs, plus one pass of the database over
its rows for the exact counts. Elsewhere (the embedded SQLite default) the rows are streamed in
chunks through the same bounded aggregates.

Accuracy of the sample: it is a uniform random sample without replacement of the window's rows
(the hash is independent of the values), so on k = SAMPLE_SIZE rows the KS statistic is within
about 1.36 * sqrt(1/k) = 0.006 of the full window's at 95 % (well inside the 0.10 threshold), and
the distribution overlays' shares and the missingness within about 1/sqrt(k) = 0.004 (exact when
the window fits in the sample). The risk PSI, the tier mix and everything else counted are exact.

Attribution drift (mean |SHAP| per feature) is read from the explanation engine's cohort aggregates
(explanations.models.CohortAggregate: sums per unit, shift and local day) for the window's whole
local days, and from the explanations themselves only for the partial days at its two ends: exact,
and the cost does not grow with the window.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection
from django.db.models import Count, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import ExtractHour

from engine import drift
from engine import treeshap as core
from engine.encoding import Codec, encode_column_lenient
from engine.shifts import DAY_SHIFT_HOURS, Shift
from engine.tiers import TIER_NAMES_MILDEST_FIRST
from explanations.models import CohortAggregate, Explanation
from models_registry.models import ModelVersion
from patients.models import Alert, AlertAction, Outcome, Prediction

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
        day = {"local_hour__gte": DAY_SHIFT_HOURS.start, "local_hour__lt": DAY_SHIFT_HOURS.stop}
        queryset = queryset.filter(**day) if where.value == Shift.DAY else queryset.exclude(**day)
    return queryset


def bucket_of(span_days: float) -> str:
    """Time buckets of the over-time series: days for up to ~6 weeks, weeks beyond."""
    return "day" if span_days <= 45 else "week"


def _bucket_labels(times: pd.Series, bucket: str) -> np.ndarray:
    local = pd.to_datetime(times, utc=True).dt.tz_convert(hospital_time_zone())
    days = local.dt.tz_localize(None).dt.normalize()
    if bucket == "week":
        days = days - pd.to_timedelta(days.dt.day_of_week, unit="D")
    return days.dt.strftime("%Y-%m-%d").to_numpy()


def _priority(ids: np.ndarray) -> np.ndarray:
    """splitmix64 of the prediction id: a fixed pseudo-random order for bottom-k sampling."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def encode_column(values: list, spec: drift.FeatureSpec) -> np.ndarray:
    """Stored payload values (as JSON values) as model inputs, by serving's rule (engine.encoding);
    a value not measured, or one serving would refuse, is NaN."""
    return encode_column_lenient(Codec(spec.name, spec.kind, tuple(spec.categories)), values)


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
    patient_days: dict[str, int] = field(default_factory=dict)  # unit -> distinct (patient, local day)
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
    """One window's WindowData: counted and sampled in the database on PostgreSQL, streamed elsewhere."""
    if connection.vendor == "postgresql":
        return window_collect_sql(
            version, start, end, where, risk_edges=risk_edges, bucket=bucket, sample_size=sample_size
        )
    return window_collect_streamed(
        version, start, end, where, risk_edges=risk_edges, bucket=bucket,
        sample_size=sample_size, chunk_size=chunk_size,
    )  # fmt: skip


def window_collect_sql(
    version: ModelVersion,
    start: datetime,
    end: datetime,
    where: Slice,
    *,
    risk_edges: np.ndarray,
    bucket: str = "day",
    sample_size: int = SAMPLE_SIZE,
) -> WindowData:
    """PostgreSQL: exact counts by GROUP BY, the sample's ids chosen in SQL (see the module docstring).

    Only table names (from the models) and Django's own compiled subquery are interpolated into the
    SQL; every value is a query parameter.
    """
    specs = feature_specs(version)
    names = [s.name for s in specs]
    tz = str(hospital_time_zone())
    sub_sql, sub_params = predictions_in(version, start, end, where).values("id").query.sql_with_params()
    table = Prediction._meta.db_table
    outcomes = Outcome._meta.db_table
    scope = f"FROM {table} p WHERE p.id IN ({sub_sql})"
    edges = np.asarray(risk_edges, dtype=np.float64)
    # bin_counts' bins are (-inf, e0], (e0, e1], ...: the index is the number of edges below the
    # risk, i.e. len(edges) - width_bucket(-risk, sorted(-edges)).
    negated = sorted(float(-e) for e in edges)
    data = WindowData(names=names, missing=np.zeros(len(names), dtype=np.int64))
    data.risk_histogram = np.zeros(RISK_HISTOGRAM_BINS, dtype=np.int64)
    label = "to_char(date_trunc(%s, p.scored_at AT TIME ZONE %s), 'YYYY-MM-DD')"
    risk_bin, bin_params = ("%s - width_bucket(-p.risk, %s::double precision[])", [len(edges), negated])
    if not len(edges):
        risk_bin, bin_params = "0", []
    hist_bin = f"least(greatest(width_bucket(p.risk, 0, 1, {RISK_HISTOGRAM_BINS}), 1), {RISK_HISTOGRAM_BINS})"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {label}, p.tier, {risk_bin}, {hist_bin}, count(*) {scope} GROUP BY 1, 2, 3, 4",  # noqa: S608
            [bucket, tz, *bin_params, *sub_params],
        )
        for day, tier, index, hist, count in cursor.fetchall():
            data.n += count
            counts = data.risk_counts.setdefault(day, np.zeros(len(edges) + 2))
            counts[int(index)] += count
            tiers = data.tier_counts.setdefault(day, dict.fromkeys(TIER_NAMES_MILDEST_FIRST, 0))
            tiers[tier] = tiers.get(tier, 0) + int(count)
            data.risk_histogram[int(hist) - 1] += count
        cursor.execute(
            f"SELECT p.unit, count(DISTINCT (p.patient_id, (p.scored_at AT TIME ZONE %s)::date)) "  # noqa: S608
            f"{scope} GROUP BY 1",
            [tz, *sub_params],
        )
        data.patient_days = {unit: int(days) for unit, days in cursor.fetchall()}
        cursor.execute(
            f"SELECT DISTINCT ON (p.encounter_id) p.encounter_id, p.scored_at, p.risk, o.outcome, {label} "  # noqa: S608
            f"FROM {table} p LEFT JOIN {outcomes} o ON o.encounter_id = p.encounter_id "
            f"WHERE p.encounter_id IS NOT NULL AND p.id IN ({sub_sql}) "
            "ORDER BY p.encounter_id, p.scored_at DESC, p.id DESC",
            [bucket, tz, *sub_params],
        )
        data.encounters = {
            encounter: (scored_at, float(risk), outcome, day)
            for encounter, scored_at, risk, outcome, day in cursor.fetchall()
        }
        # The sampled rows' values (JSON, as posted) in model order; each features document is read once.
        cursor.execute(
            "SELECT p.risk, ARRAY(SELECT f.value -> 'value' FROM unnest(%s::text[]) WITH ORDINALITY "  # noqa: S608
            "AS n(name, i) LEFT JOIN jsonb_each(p.features) f ON f.key = n.name ORDER BY n.i) "
            f"FROM {table} p WHERE p.id IN ("
            f"SELECT s.id FROM ({sub_sql}) s ORDER BY hashint8(s.id), s.id LIMIT %s)",
            [names, *sub_params, sample_size],
        )
        rows = cursor.fetchall()
    # Django reads jsonb as its JSON text (it decodes JSONField itself): decode each value here.
    posted = [[None if text is None else json.loads(text) for text in texts] for _, texts in rows]
    values = [encode_column([row[j] for row in posted], spec) for j, spec in enumerate(specs)]
    risk = np.array([r for r, _ in rows], dtype=np.float64)
    # Not measured: exact when the sample is the whole window, else the sample's share times the
    # rows (a uniform sample: standard error at most 0.5 / sqrt(k) = 0.002 of the share for k = 50,000).
    share = np.isnan(np.column_stack(values)).mean(axis=0) if rows else np.zeros(len(names))
    data.missing = np.rint(share * data.n).astype(np.int64)
    data.sample = pd.DataFrame(
        np.column_stack([*values, risk]) if rows else np.empty((0, len(names) + 1)),
        columns=[*names, "__risk__"],
    )
    return data


def window_collect_streamed(
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
    rows = (
        predictions_in(version, start, end, where)
        .values_list(
            "id",
            "scored_at",
            "risk",
            "tier",
            "unit",
            "patient_id",
            "encounter_id",
            "encounter__outcome__outcome",
            "features",
        )  # fmt: skip
        .iterator(chunk_size=chunk_size)
    )
    data = WindowData(names=names, missing=np.zeros(len(names), dtype=np.int64))
    data.risk_histogram = np.zeros(RISK_HISTOGRAM_BINS, dtype=np.int64)
    hist_edges = np.linspace(0, 1, RISK_HISTOGRAM_BINS + 1)
    sample_priority = np.empty(0, dtype=np.uint64)
    sample_values = np.empty((0, len(names) + 1), dtype=np.float64)
    patient_days: dict[str, set] = {}
    tz = hospital_time_zone()
    while chunk := list(itertools.islice(rows, chunk_size)):
        frame = pd.DataFrame.from_records(
            chunk,
            columns=[
                "id",
                "scored_at",
                "risk",
                "tier",
                "unit",
                "patient",
                "encounter",
                "outcome",
                "features",
            ],
        )
        documents = frame["features"].tolist()
        values = np.column_stack(
            [encode_column([d.get(s.name) for d in documents], s) for s in specs]
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
            tiers = data.tier_counts.setdefault(label, dict.fromkeys(TIER_NAMES_MILDEST_FIRST, 0))
            for tier, count in frame.loc[mask, "tier"].value_counts().items():
                tiers[tier] = tiers.get(tier, 0) + int(count)
        local_days = (
            pd.to_datetime(frame["scored_at"], utc=True).dt.tz_convert(tz).dt.strftime("%Y-%m-%d").to_numpy()
        )
        for unit, patient, day in zip(frame["unit"], frame["patient"], local_days, strict=True):
            patient_days.setdefault(unit, set()).add((patient, day))
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
    data.patient_days = {unit: len(days) for unit, days in patient_days.items()}
    return data


# --- attribution ---------------------------------------------------------------------------------


def _scan_abs_shap(predictions: QuerySet) -> tuple[dict[str, float], dict[str, int]]:
    """Sums of |SHAP| and counts per feature over the ready explanations of `predictions`.

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
    return sums, counts


def whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """The first and last+1 local midnights inside [start, end) (HOSPITAL_TIME_ZONE), or None when
    the window holds no whole local day."""
    tz = hospital_time_zone()
    local_start = start.astimezone(tz)
    first = datetime.combine(local_start.date(), time(0), tzinfo=tz)
    if first < start:
        first = datetime.combine(local_start.date() + timedelta(days=1), time(0), tzinfo=tz)
    last = datetime.combine(end.astimezone(tz).date(), time(0), tzinfo=tz)
    return (first, last) if first < last else None


def mean_abs_shap(
    version: ModelVersion, start: datetime, end: datetime, where: Slice, names: list[str]
) -> tuple[np.ndarray, int]:
    """Mean |SHAP| per input feature over the window's explained predictions, and their count.

    The window's whole local days are read from the cohort aggregates (a few rows per unit, shift
    and day, whatever the number of scores); only its partial days at either end are summed from
    the explanations themselves. The sums add, so the result equals a scan of every explanation.
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(more_sums: dict[str, float], more_counts: dict[str, int]) -> None:
        for name, total in more_sums.items():
            sums[name] = sums.get(name, 0.0) + total
            counts[name] = counts.get(name, 0) + more_counts[name]

    days = whole_days(start, end)
    if days is None:
        add(*_scan_abs_shap(predictions_in(version, start, end, where)))
    else:
        first, last = days
        aggregates = CohortAggregate.objects.filter(
            version=version, day__gte=first.date(), day__lt=last.date()
        )
        if where.kind == "unit":
            aggregates = aggregates.filter(unit=where.value)
        elif where.kind == "shift":
            aggregates = aggregates.filter(shift=where.value)
        totals = aggregates.values("feature").annotate(n=Sum("count"), a=Sum("total_abs")).order_by()
        add({r["feature"]: float(r["a"]) for r in totals}, {r["feature"]: int(r["n"]) for r in totals})
        if start < first:
            add(*_scan_abs_shap(predictions_in(version, start, first, where)))
        if last < end:
            add(*_scan_abs_shap(predictions_in(version, last, end, where)))
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
