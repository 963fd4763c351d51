"""Reads for the worklist page and the JSON its background refresh polls.

Every queryset starts from patients.access, so a user only ever reads patients of their own
units; the views add nothing but rendering."""

import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import F, IntegerField, Max, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from accounts import permissions
from engine.headline import threshold_note
from engine.tiers import TIERS, Tier
from explanations.models import Explanation
from models_registry.baselines import unit_baseline, version_baselines
from models_registry.models import ModelVersion
from patients import access
from patients.models import LANE_RISK, LANE_TIER_ORDER, Alert, CurrentScore, Patient, Prediction

from ..history import Trend, trends_for_patients

# Rows per worklist page, for the alerts and for the low-tier list each.
WORKLIST_PAGE_SIZE = 100

# What a row shows and nothing more: the stored feature payloads, hashes and model ids are not read.
_ALERT_FIELDS = (
    "id", "prediction_id", "patient_id", "unit", "tier", "risk", "state", "created_at",
    "prediction__bed", "prediction__model_version_id", "prediction__scored_at", "patient__external_id",
    "patient__display_name", "patient__simulated",
)  # fmt: skip
_LOW_FIELDS = (
    "id", "patient_id", "model_version_id", "unit", "bed", "tier", "risk",
    "patient__external_id", "patient__display_name", "patient__simulated",
)  # fmt: skip

# Each list's order on the current scores, the order of its index there (explanations.models), so
# PostgreSQL reads a page in index order and stops at its end; and the same order on the rows it
# shows, by their own values (which the current scores copy).
# Alerts: by lane first (needs a decision, model abstains, decided; engine.decisions), then tier and
# risk except in the abstaining lane (newest first there).
_ALERT_ORDER = (
    F("lane").asc(),
    LANE_TIER_ORDER.asc(),
    LANE_RISK.desc(),
    F("alerted_at").desc(),
    F("alert_id").asc(),
)
_ALERT_ROW_ORDER = (
    F("lane").asc(),
    LANE_TIER_ORDER.asc(),
    LANE_RISK.desc(),
    F("created_at").desc(),
    F("id").asc(),
)
_LOW_ORDER = (F("risk").desc(), F("unit").asc(), F("bed").asc(), F("prediction_id").asc())
_LOW_ROW_ORDER = (F("risk").desc(), F("unit").asc(), F("bed").asc(), F("id").asc())


def _abstains(prediction: str):
    """True when the score's ready explanation says the model abstains (the alert page then shows
    the abstention instead of the number). A scalar subquery, not EXISTS: PostgreSQL then looks
    each listed row up in the explanations' unique prediction index after the page's LIMIT,
    and never hashes the whole explanations table (one row per stored score)."""
    abstain = Explanation.objects.filter(
        prediction_id=OuterRef(prediction), status=Explanation.Status.READY
    ).values("abstain")
    return Coalesce(Subquery(abstain[:1]), Value(False))


class _Total(Subquery):
    """How many rows a queryset lists, as a column of a page's rows: not correlated with the row,
    so PostgreSQL counts once (an init plan), and the page itself can stop at its LIMIT."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS listed)"
    output_field = IntegerField()


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


# Any page past the end shows the last page; a larger number would overflow the database's OFFSET.
MAX_PAGE_NUMBER = 1_000_000


class PageNumberInvalid(ValueError):
    """A page parameter that is no page number (the views answer 400 naming `field`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _page_number(raw, field: str = "page") -> int:
    """A page number from 1 (missing: 1). A whole number past the last page shows the last page (a
    ward's list shrinks under a clinician on page 3, and its live refresh keeps asking for page 3);
    anything else, or a number past MAX_PAGE_NUMBER, is PageNumberInvalid."""
    text = str(raw).strip() if raw is not None else ""
    if not text:
        return 1
    digits = text.lstrip("0")
    if not (text.isascii() and text.isdigit()) or not digits:
        raise PageNumberInvalid(field, f"{text[:20]!r} is not a page number; pages are numbered from 1.")
    if len(digits) > len(str(MAX_PAGE_NUMBER)) or int(digits) > MAX_PAGE_NUMBER:
        raise PageNumberInvalid(field, f"{text[:20]} is past any page; at most {MAX_PAGE_NUMBER:,}.")
    return int(digits)


def _paged(
    listed: QuerySet[CurrentScore], *, order: tuple, key: str, rows: QuerySet, number: int, size: int
) -> tuple[list, Page]:
    """One page of the current scores `listed` in `order`, shown as `rows` (the alerts or
    predictions whose ids are the scores' `key`, ordered alike), and the total listed, in one
    query; a page past the end shows the last page.

    The page is chosen from the current scores alone (a subquery, in the order of their index) and
    only its rows are joined to what they show, whatever the planner estimates the list holds."""
    total = _Total(listed.order_by().values("pk"))

    def page_rows(number: int) -> list:
        page = listed.order_by(*order).values(key)[(number - 1) * size : number * size]
        return list(rows.filter(pk__in=page).annotate(listed_total=total))

    page = page_rows(number)
    if page:
        return page, Page(number=number, size=size, total=page[0].listed_total)
    count = listed.count() if number > 1 else 0
    if not count:
        return [], Page(number=1, size=size, total=0)
    last = -(-count // size)
    return page_rows(last), Page(number=last, size=size, total=count)


@dataclass
class Worklist:
    alerts: list[Alert]
    low: list[Prediction]
    units: list[str]
    unit: str | None
    tier: str | None
    state: str | None = None
    # Patients listed apart: their latest score is WORKLIST_LEFT_AFTER_HOURS older than their unit's
    # newest (left the unit, or their scores stopped). `include_left` lists them with the others.
    include_left: bool = False
    left: int = 0
    left_after_hours: int = 12
    alerts_page: Page = field(default_factory=lambda: Page(1, WORKLIST_PAGE_SIZE, 0))
    low_page: Page = field(default_factory=lambda: Page(1, WORKLIST_PAGE_SIZE, 0))

    @property
    def filtered(self) -> bool:
        return bool(self.unit or self.tier or self.state)

    @property
    def shows_alerts(self) -> bool:
        return self.tier != Tier.LOW

    @property
    def shows_low(self) -> bool:
        # Low-tier patients have no alert, so a state filter shows alerts only.
        return self.tier in (None, Tier.LOW) and self.state is None


def worklist_units(user) -> list[str]:
    """The units a user may filter on: their own, or every unit with a patient for admins/auditors."""
    units = permissions.visible_units(user)
    if units is None:
        units = Patient.objects.order_by("unit").values_list("unit", flat=True).distinct()
    return sorted(set(units))


def _alerts_page(user, current: QuerySet[CurrentScore], data: Worklist, number: int, size: int):
    """One page of the current alerts (medium or high tier: ALERT_TIERS), in lane order."""
    scores = current.filter(alert__isnull=False)
    if data.tier:
        scores = scores.filter(tier=data.tier)
    if data.state:
        # Read from the alert, not copied: its state changes with clinicians' actions.
        scores = scores.filter(alert__state=data.state)
    return _paged(
        scores,
        order=_ALERT_ORDER,
        key="alert_id",
        rows=access.alerts_for_user(user)
        .select_related("prediction", "patient")
        .only(*_ALERT_FIELDS)
        .annotate(abstains=_abstains("prediction_id"), lane=F("current_for__lane"))
        .order_by(*_ALERT_ROW_ORDER),
        number=number,
        size=size,
    )


def _still_in_unit(current: QuerySet[CurrentScore], *, hours: int) -> tuple[QuerySet[CurrentScore], int]:
    """The current scores of patients still in their unit, and how many others were left out: a
    patient whose latest score is `hours` older than the newest score of the unit has left it (or
    their scores stopped). Judged per unit against the unit's own feed, so a unit whose scoring
    stopped altogether keeps every patient listed. Two queries (the units' newest scores, the count)."""
    newest = dict(current.order_by().values_list("unit").annotate(newest=Max("scored_at")))
    if not newest:
        return current, 0
    here = Q()
    for unit, latest in newest.items():
        here |= Q(unit=unit, scored_at__gte=latest - timedelta(hours=hours))
    return current.filter(here), current.exclude(here).count()


def worklist_get(
    *,
    user,
    unit: str | None = None,
    tier: str | None = None,
    state: str | None = None,
    page: int | str | None = 1,
    low_page: int | str | None = 1,
    page_size: int | None = None,
    include_left: bool = False,
) -> Worklist:
    """Current alerts (one per patient, in lanes, then tier and risk) and the low-tier patients, a
    page of each (WORKLIST_PAGE_SIZE rows), each row with `trend` (history.Trend), `abstains`,
    `baseline` and `threshold_note`. Patients who left their unit (_still_in_unit) are counted, not
    listed, unless `include_left`. Five queries whatever the number of patients or scores (one more
    for an admin's unit list): the units' newest scores, the count left out, a page of alerts and
    one of low-tier predictions (each in its index's order, joining only its page's rows), and the
    listed patients' last scores. A page parameter that is no page number: PageNumberInvalid."""
    size = page_size or WORKLIST_PAGE_SIZE
    page, low_page = _page_number(page, "page"), _page_number(low_page, "low_page")
    units = worklist_units(user)
    unit = unit if unit in units else None
    tier = tier if tier in TIERS else None
    state = state if state in Alert.State.values else None

    data = Worklist(alerts=[], low=[], units=units, unit=unit, tier=tier, state=state)
    # Each visible patient's current (latest) score, with its unit, tier, risk and alert: a patient
    # whose latest score fell to low tier leaves the alert list even if an earlier score raised an
    # alert; a patient who moved to another unit leaves this unit's list.
    current = access.current_scores_for_user(user)
    if unit:
        current = current.filter(unit=unit)
    data.include_left = include_left
    data.left_after_hours = settings.WORKLIST_LEFT_AFTER_HOURS
    if not include_left:
        current, data.left = _still_in_unit(current, hours=data.left_after_hours)
    if data.shows_alerts:
        data.alerts, data.alerts_page = _alerts_page(user, current, data, page, size)
    if data.shows_low:
        data.low, data.low_page = _paged(
            current.filter(tier=Tier.LOW),
            order=_LOW_ORDER,
            key="prediction_id",
            rows=access.predictions_for_user(user)
            .select_related("patient")
            .only(*_LOW_FIELDS)
            .annotate(abstains=_abstains("pk"))
            .order_by(*_LOW_ROW_ORDER),
            number=low_page,
            size=size,
        )

    listed = [a.patient_id for a in data.alerts] + [p.patient_id for p in data.low]
    trends = trends_for_patients(user=user, patient_ids=listed)
    for row in (*data.alerts, *data.low):
        row.trend = trends.get(row.patient_id) or Trend(())
    _risk_context(data.alerts, lambda alert: alert.prediction.model_version_id)
    _risk_context(data.low, lambda prediction: prediction.model_version_id)
    return data


# A version's thresholds and reference baselines, read once a minute per process: they change only
# when the version's subgroup figures arrive, and reading them would cost each page a query.
_VERSION_CONTEXT_SECONDS = 60.0
_version_context: dict[int, tuple[float, float, float, dict]] = {}


def _versions_context(version_ids: set[int]) -> dict[int, tuple[float, float, dict]]:
    now = time.monotonic()
    stale = {v for v in version_ids if now - _version_context.get(v, (-1e9,))[0] > _VERSION_CONTEXT_SECONDS}
    if stale:
        fields = ("tier_high", "tier_medium", "metrics", "subgroups", "reference_size")
        for version in ModelVersion.objects.filter(pk__in=stale).only(*fields):
            context = (version.tier_high, version.tier_medium, version_baselines(version))
            _version_context[version.pk] = (now, *context)
    return {v: _version_context[v][1:] for v in version_ids if v in _version_context}


def _risk_context(rows: list, version_of) -> None:
    """Give each row what reads its risk honestly: `baseline` (the unit's reference rate, or the
    reference set's; models_registry.baselines) and `threshold_note` (why its tier, when the printed
    risk equals a printed threshold; engine.headline)."""
    versions = _versions_context({version_of(row) for row in rows})
    for row in rows:
        high, medium, baselines = versions.get(version_of(row), (None, None, None))
        row.baseline = unit_baseline(baselines, row.unit) if baselines else None
        row.threshold_note = threshold_note(row.risk, high=high, medium=medium) if high is not None else ""
