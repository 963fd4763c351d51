"""Reads of a patient's earlier scores: the worklist's risk trend and change since the previous
score, and the alert page's earlier scores and per-feature trend marks.

Every queryset starts from patients.access, so a clinician's history of a patient holds only
the scores made in their own units. Each read is one query whatever the number of patients.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection
from django.db.models import F, Max, Value, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils.dateparse import parse_datetime

from accounts import permissions
from common.timestamps import iso_utc
from engine.headline import shown_percent
from models_registry.models import ModelFeature
from patients import access
from patients.models import Prediction, scored_after, scored_before

# How many scores a worklist sparkline shows (the current one included).
TREND_POINTS = 8
# How many earlier scores the alert page lists and searches for a feature's previous value.
EARLIER_SCORES = 20


class ScorePoint(NamedTuple):
    # A tuple: a worklist page builds one per point of every listed patient's sparkline.
    prediction_id: int
    scored_at: datetime
    risk: float
    tier: str


@dataclass(frozen=True)
class Trend:
    """A patient's latest scores, oldest first; the last is the current score."""

    points: tuple[ScorePoint, ...]

    @property
    def current(self) -> ScorePoint | None:
        return self.points[-1] if self.points else None

    @property
    def previous(self) -> ScorePoint | None:
        return self.points[-2] if len(self.points) > 1 else None

    @property
    def delta_points(self) -> int | None:
        """Risk change since the previous score in whole percentage points (None: first score), the
        difference of the two risks as the page prints them (engine.headline.shown_percent): 90% then
        65% reads -25, never the -26 of the unrounded 0.904 -> 0.646."""
        if self.previous is None:
            return None
        return shown_percent(self.current.risk) - shown_percent(self.previous.risk)

    @property
    def previous_tier(self) -> str | None:
        """The previous score's tier when it differs from the current one."""
        if self.previous is None or self.previous.tier == self.current.tier:
            return None
        return self.previous.tier

    def as_json(self) -> dict:
        return {
            "points": [
                {
                    "prediction": p.prediction_id,
                    "scored_at": iso_utc(p.scored_at),
                    "risk": p.risk,
                    "tier": p.tier,
                }
                for p in self.points
            ],
            "delta_points": self.delta_points,
            "previous_tier": self.previous_tier,
        }


def trends_for_patients(*, user, patient_ids: list[int], points: int = TREND_POINTS) -> dict[int, Trend]:
    """Each patient's last `points` visible scores, in one query.

    On PostgreSQL each patient's scores are read newest first from the (patient, scored_at)
    index, `points` rows per patient however long their history (one array per patient); other
    databases rank every score of the patients with a window function."""
    if not patient_ids:
        return {}
    if connection.vendor == "postgresql":
        return _trends_indexed(user=user, patient_ids=patient_ids, points=points)
    ranked = (
        access.predictions_for_user(user)
        .filter(patient_id__in=patient_ids)
        .annotate(
            recency=Window(
                RowNumber(), partition_by=[F("patient_id")], order_by=[F("scored_at").desc(), F("id").desc()]
            )
        )
        .filter(recency__lte=points)
        .order_by("patient_id", "scored_at", "id")
        .values_list("patient_id", "id", "scored_at", "risk", "tier")
    )
    grouped: dict[int, list[ScorePoint]] = {}
    for patient_id, prediction_id, scored_at, risk, tier in ranked:
        grouped.setdefault(patient_id, []).append(ScorePoint(prediction_id, scored_at, risk, tier))
    return {patient_id: Trend(tuple(scores)) for patient_id, scores in grouped.items()}


def _trends_indexed(*, user, patient_ids: list[int], points: int) -> dict[int, Trend]:
    """Each patient's last `points` scores from the (patient, scored_at, id) index, then only
    those made in the user's units (accounts.permissions.visible_units) are kept.

    One row per patient whose scores come as typed arrays (ids, times, risks, tiers, units), oldest
    first, so nothing is decoded or ordered per point but by the database and its driver. The
    unit check runs on the read rows rather than inside the per-patient read: inside,
    the planner misjudges how many of a patient's scores are in the user's units (all or none,
    in practice) and sorts the patient's whole history instead of reading its newest rows."""
    units = permissions.visible_units(user)
    allowed = None if units is None else set(units)
    table = Prediction._meta.db_table
    # The table name comes from the model; the values are parameters.
    sql = (
        "SELECT listed.id, recent.ids, recent.scored, recent.risks, recent.tiers, recent.units "  # noqa: S608
        "FROM unnest(%s::bigint[]) AS listed(id) CROSS JOIN LATERAL ("
        " SELECT array_agg(last.id ORDER BY last.scored_at, last.id) AS ids,"
        " array_agg(last.scored_at ORDER BY last.scored_at, last.id) AS scored,"
        " array_agg(last.risk ORDER BY last.scored_at, last.id) AS risks,"
        " array_agg(last.tier ORDER BY last.scored_at, last.id) AS tiers,"
        " array_agg(last.unit ORDER BY last.scored_at, last.id) AS units"
        f" FROM (SELECT id, scored_at, risk, tier, unit FROM {table} WHERE patient_id = listed.id"
        " ORDER BY scored_at DESC, id DESC LIMIT %s) AS last"
        ") AS recent"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(patient_ids), points])
        rows = cursor.fetchall()
    trends: dict[int, Trend] = {}
    for patient_id, ids, scored, risks, tiers, point_units in rows:
        if not ids:
            continue
        if allowed is None:
            scores = tuple(map(ScorePoint, ids, scored, risks, tiers))
        else:
            scores = tuple(
                ScorePoint(*point)
                for *point, unit in zip(ids, scored, risks, tiers, point_units, strict=True)
                if unit in allowed
            )
        if scores:
            trends[patient_id] = Trend(scores)
    return trends


def earlier_scores(*, user, prediction: Prediction, limit: int = EARLIER_SCORES) -> list[Prediction]:
    """The patient's scores before this one (newest first) that the user may see, with features.

    Each carries `abstains` (its explanation abstains), so the page never shows the tier of a score
    the model called unreliable."""
    return list(
        access.predictions_for_user(user)
        .filter(scored_before(prediction), patient_id=prediction.patient_id)
        .only("id", "scored_at", "risk", "tier", "unit", "features", "patient_id")
        .annotate(abstains=Coalesce(F("explanation__abstain"), Value(False)))
        .order_by("-scored_at", "-id")[:limit]
    )


@dataclass(frozen=True)
class Currency:
    """Whether a score the page shows is still the patient's present state, when it is not.

    kind: "newer" (the patient was scored again: `newer_*` is that score, in a unit the user sees),
    "elsewhere" (scored again in a unit the user does not see) or "left" (this is the patient's
    latest score, but it is `lag_hours` older than the newest score of its unit: the patient has
    probably left the unit, or their scoring stopped; the worklist lists them apart, on the same
    rule, WORKLIST_LEFT_AFTER_HOURS)."""

    kind: str
    newer_prediction_id: int | None = None
    newer_scored_at: datetime | None = None
    lag_hours: int = 0

    @property
    def lag_text(self) -> str:
        """ "29 hours", "7 days" (whole days from 48 hours on)."""
        if self.lag_hours >= 48:
            return f"{self.lag_hours // 24} days"
        return f"{self.lag_hours} hour{'s' if self.lag_hours != 1 else ''}"


def score_currency(*, user, prediction: Prediction) -> Currency | None:
    """None when the score is the patient's latest of its model and its unit's feed has not moved on.

    Per registered model: a patient scored by two models has a latest score of each."""
    newer = (
        access.predictions_for_user(user)
        .filter(
            scored_after(prediction),
            patient_id=prediction.patient_id,
            registered_model_id=prediction.registered_model_id,
        )
        .order_by("-scored_at", "-id")
        .only("id", "scored_at")
        .first()
    )
    if newer is not None:
        return Currency(kind="newer", newer_prediction_id=newer.pk, newer_scored_at=newer.scored_at)
    if access.scored_later_outside_units(user, prediction):
        return Currency(kind="elsewhere")
    newest = (
        access.current_scores_for_user(user)
        .filter(unit=prediction.unit, prediction__registered_model_id=prediction.registered_model_id)
        .aggregate(newest=Max("scored_at"))["newest"]
    )
    lag = (newest - prediction.scored_at) if newest is not None else timedelta(0)
    if lag > timedelta(hours=settings.WORKLIST_LEFT_AFTER_HOURS):
        return Currency(kind="left", lag_hours=int(lag.total_seconds() // 3600))
    return None


@dataclass(frozen=True)
class FeatureTrend:
    """How a feature's value compares with its most recent earlier value for this patient."""

    direction: str  # up | down | same | changed
    previous_text: str  # "3.1 mmol/L"
    previous_at: datetime  # when the earlier value was observed (or scored, if not given)
    previous_prediction_id: int

    @property
    def mark(self) -> str:
        return {"up": "↑", "down": "↓", "same": "→", "changed": "≠"}[self.direction]

    @property
    def words(self) -> str:
        return {"up": "up from", "down": "down from", "same": "unchanged from", "changed": "changed from"}[
            self.direction
        ]


def observed_at_parse(raw) -> datetime | None:
    """A feature's `observed_at` as stored (ISO-8601 text), or None when absent or unreadable."""
    if not raw or not isinstance(raw, str):
        return None
    try:
        return parse_datetime(raw)
    except ValueError:
        return None


def _as_number(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def feature_trend(
    *, name: str, kind: str, unit: str, value, earlier: list[Prediction], format_value
) -> FeatureTrend | None:
    """Compare `value` with the most recent earlier score in which the feature was measured.

    None when the current value is not measured or the patient has no earlier measured value."""
    if value is None:
        return None
    for previous in earlier:
        entry = (previous.features or {}).get(name) or {}
        old = entry.get("value")
        if old is None:
            continue
        new_num, old_num = _as_number(value), _as_number(old)
        if new_num is not None and old_num is not None and kind != ModelFeature.Kind.CATEGORICAL:
            tolerance = 1e-9 * max(1.0, abs(old_num))
            direction = (
                "same" if abs(new_num - old_num) <= tolerance else ("up" if new_num > old_num else "down")
            )
        else:
            direction = "same" if str(value) == str(old) else "changed"
        old_unit = entry.get("unit") or unit
        text = format_value(old, kind)
        return FeatureTrend(
            direction=direction,
            previous_text=f"{text} {old_unit}".strip() if kind == ModelFeature.Kind.NUMERIC else text,
            previous_at=observed_at_parse(entry.get("observed_at")) or previous.scored_at,
            previous_prediction_id=previous.pk,
        )
    return None
