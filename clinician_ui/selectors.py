"""Reads for the clinician pages. Every queryset starts from clinician_ui.access, so a user only
ever reads patients of their own units; the views add nothing but rendering."""

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Case, OuterRef, QuerySet, Subquery, Value, When

from explanations.models import Alert, Explanation, Patient, Prediction
from models_registry.models import ModelFeature

from . import access
from .history import EARLIER_SCORES, FeatureTrend, Trend, earlier_scores, feature_trend, trends_for_patients
from .history import observed_at_parse as _observed_at
from .models import AlertAction

ALERT_TIERS = ("high", "medium")
TIERS = ("high", "medium", "low")
_TIER_ORDER = Case(When(tier="high", then=Value(0)), When(tier="medium", then=Value(1)), default=Value(2))


def _current_predictions(user) -> QuerySet[Prediction]:
    """Each visible patient's latest score: what the worklist calls the patient's current state.

    A patient whose latest score fell to low tier leaves the alert list even if an earlier score
    raised an alert; a patient who moved to another unit leaves this unit's list."""
    latest = (
        Prediction.objects.filter(patient=OuterRef("patient")).order_by("-scored_at", "-id").values("id")[:1]
    )
    return access.predictions_for_user(user).filter(id=Subquery(latest))


@dataclass
class Worklist:
    alerts: list[Alert]
    low: list[Prediction]
    units: list[str]
    unit: str | None
    tier: str | None
    state: str | None = None

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
    *, user, unit: str | None = None, tier: str | None = None, state: str | None = None
) -> Worklist:
    """Current alerts (one per patient, high tier first, then by risk) and the low-tier patients,
    each with `trend`: the patient's last scores (history.Trend) for the sparkline and the change
    since the previous score.

    Four queries whatever the number of patients (one more for an admin's unit list): alerts with
    their prediction and patient, low-tier predictions with their patient, and every listed
    patient's last scores ranked by a window function."""
    units = worklist_units(user)
    unit = unit if unit in units else None
    tier = tier if tier in TIERS else None
    state = state if state in Alert.State.values else None

    current = _current_predictions(user)
    if unit:
        current = current.filter(unit=unit)

    data = Worklist(alerts=[], low=[], units=units, unit=unit, tier=tier, state=state)
    if data.shows_alerts:
        alert_qs = access.alerts_for_user(user).filter(prediction__in=current, tier__in=ALERT_TIERS)
        if tier:
            alert_qs = alert_qs.filter(tier=tier)
        if state:
            alert_qs = alert_qs.filter(state=state)
        data.alerts = list(
            # The feature payloads are not shown on the worklist: not loaded (nor JSON-decoded).
            alert_qs.select_related("prediction", "patient")
            .defer("prediction__features")
            .annotate(tier_order=_TIER_ORDER)
            .order_by("tier_order", "-risk", "-created_at", "id")
        )

    if data.shows_low:
        data.low = list(
            current.filter(tier="low")
            .select_related("patient")
            .defer("features")
            .order_by("-risk", "unit", "bed", "id")
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
    for feature in version.features.filter(decision_time=True).order_by("position"):
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
