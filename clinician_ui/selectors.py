"""Reads for the clinician pages. Every queryset starts from clinician_ui.access, so a user only
ever reads patients of their own units; the views add nothing but rendering."""

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, Case, Count, F, Func, QuerySet, Value, When, Window

from explanations.models import Alert, CurrentScore, Explanation, Patient, Prediction
from models_registry.models import ModelFeature

from . import access
from .explanation_parts import (
    SimilarPart,
    StabilityPart,
    UncertaintyPart,
    similar_part,
    stability_part,
    uncertainty_part,
)
from .history import EARLIER_SCORES, FeatureTrend, Trend, earlier_scores, feature_trend, trends_for_patients
from .history import observed_at_parse as _observed_at
from .models import AlertAction

ALERT_TIERS = ("high", "medium")
TIERS = ("high", "medium", "low")
_TIER_ORDER = Case(When(tier="high", then=Value(0)), When(tier="medium", then=Value(1)), default=Value(2))


# Rows per worklist page, for the alerts and for the low-tier list each.
WORKLIST_PAGE_SIZE = 100


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
    patient's last scores (history.Trend) for the sparkline and the change since the previous score.

    Four queries whatever the number of patients or stored scores (one more for an admin's unit
    list): a page of alerts with their prediction, patient and total; a page of low-tier
    predictions with their patient and total; and the listed patients' last scores."""
    size = page_size or WORKLIST_PAGE_SIZE
    units = worklist_units(user)
    unit = unit if unit in units else None
    tier = tier if tier in TIERS else None
    state = state if state in Alert.State.values else None

    current = _current_predictions(user)
    if unit:
        current = current.filter(unit=unit)

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
            # The feature payloads are not shown on the worklist: not loaded (nor JSON-decoded).
            alert_qs.select_related("prediction", "patient")
            .defer("prediction__features")
            .annotate(tier_order=_TIER_ORDER)
            .order_by("tier_order", "-risk", "-created_at", "id"),
            _page_number(page),
            size,
        )

    if data.shows_low:
        data.low, data.low_page = _paged(
            current.filter(tier="low")
            .select_related("patient")
            .defer("features")
            .order_by("-risk", "unit", "bed", "id"),
            _page_number(low_page),
            size,
        )

    listed = [a.patient_id for a in data.alerts] + [p.patient_id for p in data.low]
    trends = trends_for_patients(user=user, patient_ids=listed)
    for row in (*data.alerts, *data.low):
        row.trend = trends.get(row.patient_id) or Trend(())
    return data


# ---------------------------------------------------------------------------------------------
# One score, explained


@dataclass
class FeatureRow:
    name: str
    label: str
    measured: bool
    value_text: str  # "4.2", "yes", "not measured"
    unit: str
    observed_at: datetime | None
    age_text: str  # "45 min before score"
    source_system: str
    source_reference: str
    source_url: str  # only http(s) urls; anything else is not linked
    shap: float | None
    probability_points: float | None
    kind: str = ModelFeature.Kind.NUMERIC
    raw_value: object = None
    # Against the patient's most recent earlier measured value (set on the alert/score page).
    trend: FeatureTrend | None = None
    # The schema's what-if bounds: may a what-if change it, and within which plausible range.
    mutable: bool = False
    schema_unit: str = ""  # the schema's unit, for the range (shown even when not measured)
    range_min: float | None = None
    range_max: float | None = None
    categories: list[str] = field(default_factory=list)

    @property
    def what_if_value(self) -> str:
        """The current value as the what-if input shows it ("" when not measured)."""
        if self.raw_value is None:
            return ""
        if self.kind == ModelFeature.Kind.BINARY:
            return "true" if self.raw_value in (1, True, "1", "true", "yes") else "false"
        return str(self.raw_value)


@dataclass
class ScoreDetail:
    prediction: Prediction
    alert: Alert | None
    explanation: Explanation | None
    status: str  # pending | running | ready | failed | missing
    rows: list[FeatureRow] = field(default_factory=list)
    base_value: float | None = None
    base_probability: float | None = None
    background_size: int | None = None
    background_description: str = ""
    simulated: bool = False
    # The patient's scores before this one, newest first (set by score_page_get).
    earlier: list[Prediction] = field(default_factory=list)
    # The explanation engine's results (None until the explanation is ready).
    uncertainty: UncertaintyPart | None = None
    stability: StabilityPart | None = None
    similar: SimilarPart | None = None
    abstain: bool = False
    abstain_reason: str = ""
    # The demo model's reference set is real RHC study patients (its bundle says so).
    rhc_reference: bool = False

    @property
    def what_if_mutable(self) -> list[FeatureRow]:
        """The inputs a what-if may change, largest contribution first."""
        return [r for r in self.rows if r.mutable]

    @property
    def what_if_fixed(self) -> list[FeatureRow]:
        """The inputs a what-if may not change (age, sex: immutable in the schema)."""
        return [r for r in self.rows if not r.mutable]

    @property
    def ready(self) -> bool:
        return self.status == Explanation.Status.READY

    @property
    def top_factor(self) -> FeatureRow | None:
        ranked = [r for r in self.rows if r.shap is not None]
        return max(ranked, key=lambda r: abs(r.shap)) if ranked else None


def format_value(value, kind: str) -> str:
    if kind == ModelFeature.Kind.BINARY:
        return "yes" if value in (1, True, "1", "true", "yes") else "no"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    return str(value)


def format_age(observed_at: datetime | None, scored_at: datetime) -> str:
    """How old a value was when the model scored: "45 min before score"."""
    if observed_at is None:
        return ""
    minutes = int((scored_at - observed_at).total_seconds() // 60)
    if minutes < 1:
        return "at score time"
    if minutes < 60:
        return f"{minutes} min before score"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {rest} min before score" if rest else f"{hours} h before score"
    return f"{hours // 24} d {hours % 24} h before score"


def safe_url(url) -> str:
    """Only web links are rendered as links: a `javascript:` url from outside data never is."""
    if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
        return url
    return ""


def score_detail_get(*, prediction: Prediction, alert: Alert | None = None) -> ScoreDetail:
    """A prediction (already checked by clinician_ui.access) with its explanation and feature table.

    Rows are in model input order until the explanation is ready, then by |contribution|."""
    # explanations.core imports shap (and numba): loaded on first use, not at URL import.
    from explanations.core import probability_points, sigmoid

    explanation = Explanation.objects.filter(prediction=prediction).first()
    status = explanation.status if explanation else "missing"
    if status == Explanation.Status.READY and (
        explanation.contributions is None or explanation.base_value is None
    ):
        # Marked ready without its numbers: shown as failed, never as a partial chart.
        status = Explanation.Status.FAILED
    version = prediction.model_version
    detail = ScoreDetail(
        prediction=prediction,
        alert=alert,
        explanation=explanation,
        status=status,
        background_description=version.background_description,
        simulated=prediction.simulated or prediction.patient.simulated,
    )

    shap_by_name: dict[str, float] = {}
    points_by_name: dict[str, float] = {}
    if status == Explanation.Status.READY:
        names = [c["name"] for c in explanation.contributions]
        values = [float(c["shap"]) for c in explanation.contributions]
        shap_by_name = dict(zip(names, values, strict=True))
        points_by_name = dict(
            zip(names, probability_points(explanation.base_value, values).tolist(), strict=True)
        )
        detail.base_value = explanation.base_value
        detail.base_probability = float(sigmoid(explanation.base_value))
        detail.background_size = explanation.background_size or version.background_size

    features = prediction.features or {}
    specs = list(version.features.filter(decision_time=True).order_by("position"))
    if status == Explanation.Status.READY:
        labels = {f.name: f.label or f.name for f in specs}
        outcome = version.spec.get("outcome") or version.registered_model.outcome
        detail.uncertainty = uncertainty_part(explanation.uncertainty, outcome=outcome, labels=labels)
        detail.stability = stability_part(explanation.stability, labels=labels)
        detail.similar = similar_part(explanation.similar_patients, labels=labels)
        detail.abstain = explanation.abstain
        detail.rhc_reference = "RHC study" in str(version.spec.get("intended_use") or "")
        detail.abstain_reason = explanation.abstain_reason
    for feature in specs:
        entry = features.get(feature.name) or {}
        value = entry.get("value")
        source = entry.get("source") or {}
        observed_at = _observed_at(entry.get("observed_at"))
        measured = value is not None
        detail.rows.append(
            FeatureRow(
                name=feature.name,
                label=feature.label or feature.name,
                measured=measured,
                value_text=format_value(value, feature.kind) if measured else "not measured",
                unit=(entry.get("unit") or feature.unit) if measured else "",
                observed_at=observed_at,
                age_text=format_age(observed_at, prediction.scored_at),
                source_system=source.get("system") or feature.source,
                source_reference=source.get("reference") or "",
                source_url=safe_url(source.get("url")),
                shap=shap_by_name.get(feature.name),
                probability_points=points_by_name.get(feature.name),
                kind=feature.kind,
                raw_value=value,
                mutable=feature.mutable,
                schema_unit=feature.unit,
                range_min=feature.range_min,
                range_max=feature.range_max,
                categories=list(feature.categories or []),
            )
        )
    if shap_by_name:
        detail.rows.sort(key=lambda r: -abs(r.shap) if r.shap is not None else 0.0)
    return detail


def score_page_get(*, user, prediction: Prediction, alert: Alert | None = None) -> ScoreDetail:
    """What the alert and score pages show: score_detail_get plus the patient's earlier scores the
    user may see and, per feature, a trend mark against its most recent earlier measured value.
    A constant number of queries: the earlier scores are one query, whatever their number."""
    detail = score_detail_get(prediction=prediction, alert=alert)
    detail.earlier = earlier_scores(user=user, prediction=prediction, limit=EARLIER_SCORES)
    for row in detail.rows:
        row.trend = feature_trend(
            name=row.name,
            kind=row.kind,
            unit=row.unit,
            value=row.raw_value,
            earlier=detail.earlier,
            format_value=format_value,
        )
    return detail


def model_card_path(version) -> str:
    """The model card of a registered version (served by models_registry)."""
    from urllib.parse import quote

    return f"/models/{quote(version.registered_model.name, safe='')}/versions/{version.version}/"


def explanation_figure(detail: ScoreDetail, *, top: int = 12) -> dict:
    """Exactly what the waterfall needs: the base value, the largest contributions in log-odds and
    the rest summed into one bar, ending at the model output. No numbers unless ready."""
    prediction = detail.prediction
    version = prediction.model_version
    body: dict = {
        "prediction": prediction.pk,
        "status": detail.status,
        "model": {"name": version.registered_model.name, "version": version.version},
    }
    if not detail.ready:
        return body
    ranked = [r for r in detail.rows if r.shap is not None]
    shown, rest = ranked[:top], ranked[top:]
    steps = [
        {
            "name": r.name,
            "label": r.label,
            "value": f"{r.value_text} {r.unit}".strip(),
            "shap": r.shap,
            "probability_points": r.probability_points,
        }
        for r in shown
    ]
    if rest:
        steps.append(
            {
                "name": None,
                "label": f"{len(rest)} other features",
                "value": "",
                "shap": sum(r.shap for r in rest),
                "probability_points": sum(r.probability_points for r in rest),
            }
        )
    body.update(
        {
            "units": "log-odds",
            "base_value": detail.base_value,
            "base_probability": detail.base_probability,
            "output": detail.base_value + sum(r.shap for r in ranked),
            "risk": prediction.risk,
            "background_size": detail.background_size,
            "contributions": steps,
        }
    )
    return body


def alert_actions(alert: Alert) -> list[AlertAction]:
    return list(alert.actions.select_related("user").order_by("acted_at", "id"))


def action_reasons() -> dict[str, list[dict[str, str]]]:
    return settings.ALERT_ACTION_REASONS


def reason_label(action: str, code: str) -> str:
    for reason in action_reasons().get(action, []):
        if reason["code"] == code:
            return reason["label"]
    return code
