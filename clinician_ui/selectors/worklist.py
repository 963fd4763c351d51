"""Reads for the worklist page and the JSON its background refresh polls.

Every queryset starts from clinician_ui.access, so a user only ever reads patients of their own
units; the views add nothing but rendering."""

from dataclasses import dataclass, field

from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    Count,
    F,
    Func,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
    When,
    Window,
)
from django.db.models.functions import Coalesce

from explanations.models import Alert, CurrentScore, Explanation, Patient, Prediction

from .. import access
from ..history import Trend, trends_for_patients

ALERT_TIERS = ("high", "medium")
TIERS = ("high", "medium", "low")
_TIER_ORDER = Case(When(tier="high", then=Value(0)), When(tier="medium", then=Value(1)), default=Value(2))

# Rows per worklist page, for the alerts and for the low-tier list each.
WORKLIST_PAGE_SIZE = 100

# What a row shows and nothing more: the stored feature payloads, hashes and model ids are not read.
_ALERT_FIELDS = (
    "id", "prediction_id", "patient_id", "unit", "tier", "risk", "state", "created_at",
    "prediction__bed", "patient__external_id", "patient__display_name", "patient__simulated",
)  # fmt: skip
_LOW_FIELDS = (
    "id", "patient_id", "unit", "bed", "tier", "risk",
    "patient__external_id", "patient__display_name", "patient__simulated",
)  # fmt: skip


def _abstains(prediction: str):
    """True when the score's ready explanation says the model abstains (the alert page then shows
    the abstention instead of the number). A scalar subquery, not EXISTS: PostgreSQL then looks
    each listed row up in the explanations' unique prediction index after the page's LIMIT,
    and never hashes the whole explanations table (one row per stored score)."""
    abstain = Explanation.objects.filter(
        prediction_id=OuterRef(prediction), status=Explanation.Status.READY
    ).values("abstain")
    return Coalesce(Subquery(abstain[:1]), Value(False))


def _current_predictions(user) -> QuerySet[Prediction]:
    """Each visible patient's latest score: what the worklist calls the patient's current state.

    Read through Patient.latest_prediction (kept by ingest), not by searching every stored score.
    A patient whose latest score fell to low tier leaves the alert list even if an earlier score
    raised an alert; a patient who moved to another unit leaves this unit's list."""
    return access.predictions_for_user(user).filter(current_for__isnull=False)


def _current_alerts(alerts: QuerySet[Alert]) -> QuerySet[Alert]:
    """The alerts raised by the patients' current scores.

    On PostgreSQL the current scores' ids are read first (an init plan over the small
    CurrentScore table) and looked up in the alerts' unique prediction index, rather than joined
    by hashing every alert ever raised, which grows with the stored history."""
    if connection.vendor == "postgresql":
        from django.contrib.postgres.expressions import ArraySubquery

        current_ids = ArraySubquery(CurrentScore.objects.values("prediction_id"))
        # prediction_id = ANY(ARRAY(SELECT prediction_id FROM current scores))
        is_current = Func(
            F("prediction_id"),
            current_ids,
            arg_joiner=" = ANY(",
            template="(%(expressions)s))",
            output_field=BooleanField(),
        )
        return alerts.filter(is_current)
    return alerts.filter(prediction__current_for__isnull=False)


@dataclass
class Page:
    """One page of a worklist list: `number` from 1, `total` rows over all pages."""

    number: int
    size: int
    total: int

    @property
    def count(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        return 0 if not self.total else (self.number - 1) * self.size + 1

    @property
    def last(self) -> int:
        return min(self.total, self.number * self.size)

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.count

    def as_json(self) -> dict:
        return {"number": self.number, "size": self.size, "total": self.total, "pages": self.count}


def _page_number(raw) -> int:
    try:
        return max(1, int(raw))
    except (TypeError, ValueError):
        return 1


def _paged(queryset: QuerySet, number: int, size: int) -> tuple[list, Page]:
    """One page of `queryset` and its total in one query (a count over the whole result as a
    window); a page past the end shows the last page."""
    counted = queryset.annotate(listed_total=Window(Count("pk")))
    rows = list(counted[(number - 1) * size : number * size])
    if rows:
        return rows, Page(number=number, size=size, total=rows[0].listed_total)
    total = queryset.count() if number > 1 else 0
    if not total:
        return [], Page(number=1, size=size, total=0)
    last = -(-total // size)
    rows = list(counted[(last - 1) * size : last * size])
    return rows, Page(number=last, size=size, total=total)


@dataclass
class Worklist:
    alerts: list[Alert]
    low: list[Prediction]
    units: list[str]
    unit: str | None
    tier: str | None
    state: str | None = None
    alerts_page: Page = field(default_factory=lambda: Page(1, WORKLIST_PAGE_SIZE, 0))
    low_page: Page = field(default_factory=lambda: Page(1, WORKLIST_PAGE_SIZE, 0))

    @property
    def filtered(self) -> bool:
        return bool(self.unit or self.tier or self.state)

    @property
    def shows_alerts(self) -> bool:
        return self.tier != "low"

    @property
    def shows_low(self) -> bool:
        # Low-tier patients have no alert, so a state filter shows alerts only.
        return self.tier in (None, "low") and self.state is None


def worklist_units(user) -> list[str]:
    """The units a user may filter on: their own, or every unit with a patient for admins/auditors."""
    units = access.visible_units(user)
    if units is None:
        units = Patient.objects.order_by("unit").values_list("unit", flat=True).distinct()
    return sorted(set(units))


def worklist_get(
    *,
    user,
    unit: str | None = None,
    tier: str | None = None,
    state: str | None = None,
    page: int | str | None = 1,
    low_page: int | str | None = 1,
    page_size: int | None = None,
) -> Worklist:
    """Current alerts (one per patient, high tier first, then by risk) and the low-tier patients,
    a page of each (`page`, `low_page`; WORKLIST_PAGE_SIZE rows), each row with `trend`: the
    patient's last scores (history.Trend) for the sparkline and the change since the previous
    score, and `abstains`: whether the model abstains on the row's score.

    Four queries whatever the number of patients or stored scores (one more for an admin's unit
    list): a page of alerts with their prediction, patient and total; a page of low-tier
    predictions with their patient and total; and the listed patients' last scores."""
    size = page_size or WORKLIST_PAGE_SIZE
    units = worklist_units(user)
    unit = unit if unit in units else None
    tier = tier if tier in TIERS else None
    state = state if state in Alert.State.values else None

    data = Worklist(alerts=[], low=[], units=units, unit=unit, tier=tier, state=state)
    if data.shows_alerts:
        alert_qs = _current_alerts(access.alerts_for_user(user)).filter(tier__in=ALERT_TIERS)
        if unit:
            alert_qs = alert_qs.filter(unit=unit)
        if tier:
            alert_qs = alert_qs.filter(tier=tier)
        if state:
            alert_qs = alert_qs.filter(state=state)
        data.alerts, data.alerts_page = _paged(
            alert_qs.select_related("prediction", "patient")
            .only(*_ALERT_FIELDS)
            .annotate(tier_order=_TIER_ORDER, abstains=_abstains("prediction_id"))
            .order_by("tier_order", "-risk", "-created_at", "id"),
            _page_number(page),
            size,
        )

    if data.shows_low:
        current = _current_predictions(user)
        if unit:
            current = current.filter(unit=unit)
        data.low, data.low_page = _paged(
            current.filter(tier="low")
            .select_related("patient")
            .only(*_LOW_FIELDS)
            .annotate(abstains=_abstains("pk"))
            .order_by("-risk", "unit", "bed", "id"),
            _page_number(low_page),
            size,
        )

    listed = [a.patient_id for a in data.alerts] + [p.patient_id for p in data.low]
    trends = trends_for_patients(user=user, patient_ids=listed)
    for row in (*data.alerts, *data.low):
        row.trend = trends.get(row.patient_id) or Trend(())
    return data
