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

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import ExtractHour

from engine import drift
from engine import treeshap as core
from engine.shifts import DAY_SHIFT_HOURS, Shift
from explanations.models import CohortAggregate, Explanation
from models_registry.models import ModelVersion
from patients.models import Alert, AlertAction, Prediction

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

    def words(self) -> str:
        """How a sentence names the slice: "all units, all shifts", "unit MICU", "the day shift"."""
        if self.kind == "overall":
            return "all units, all shifts"
        return f"unit {self.value}" if self.kind == "unit" else f"the {self.value} shift"

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


def predictions_in(
    version: ModelVersion, start: datetime | None, end: datetime | None, where: Slice
) -> QuerySet:
    """The version's scores in [start, end) (None: unbounded) and in the slice."""
    queryset = Prediction.objects.filter(model_version=version)
    if start is not None:
        queryset = queryset.filter(scored_at__gte=start)
    if end is not None:
        queryset = queryset.filter(scored_at__lt=end)
    if where.kind == "unit":
        queryset = queryset.filter(unit=where.value)
    elif where.kind == "shift":
        queryset = queryset.annotate(local_hour=ExtractHour("scored_at", tzinfo=hospital_time_zone()))
        day = {"local_hour__gte": DAY_SHIFT_HOURS.start, "local_hour__lt": DAY_SHIFT_HOURS.stop}
        queryset = queryset.filter(**day) if where.value == Shift.DAY else queryset.exclude(**day)
    return queryset


def newest_scored_at(version: ModelVersion, where: Slice) -> datetime | None:
    """The time of the version's newest score in the slice, whenever it was."""
    return predictions_in(version, None, None, where).aggregate(newest=Max("scored_at"))["newest"]


def _minute(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def empty_window_note(
    version: ModelVersion, start: datetime, end: datetime, where: Slice, *, what: str = "scores"
) -> str:
    """The sentence an empty window opens with: what is missing, and where the scores are."""
    newest = newest_scored_at(version, where)
    missing = f"No {what} of {version} for {where.words()} between {_minute(start)} and {_minute(end)}"
    if newest is None:
        return f"{missing}: this model version has no scores for {where.words()} at all yet."
    when = "before" if newest < start else "after"
    return f"{missing}; its newest score there is from {_minute(newest)}, {when} this window."


def bucket_of(span_days: float) -> str:
    """Time buckets of the over-time series: days for up to ~6 weeks, weeks beyond."""
    return "day" if span_days <= 45 else "week"


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
