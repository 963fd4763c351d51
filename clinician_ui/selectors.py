"""Reads for the clinician pages. Every queryset starts from clinician_ui.access, so a user only
ever reads patients of their own units; the views add nothing but rendering."""

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Case, OuterRef, QuerySet, Subquery, Value, When
from django.utils.dateparse import parse_datetime

from explanations.models import Alert, Explanation, Patient, Prediction
from models_registry.models import ModelFeature

from . import access
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


def worklist_units(user) -> list[str]:
    """The units a user may filter on: their own, or every unit with a patient for admins/auditors."""
    units = access.visible_units(user)
    if units is None:
        units = Patient.objects.order_by("unit").values_list("unit", flat=True).distinct()
    return sorted(set(units))


def worklist_get(*, user, unit: str | None = None, tier: str | None = None) -> Worklist:
    """Current alerts (one per patient, high tier first, then by risk) and the low-tier patients.

    Three queries whatever the number of patients: units, alerts with their prediction and
    patient, low-tier predictions with their patient."""
    units = worklist_units(user)
    unit = unit if unit in units else None
    tier = tier if tier in TIERS else None

    current = _current_predictions(user)
    if unit:
        current = current.filter(unit=unit)

    alerts: list[Alert] = []
    if tier in (None, *ALERT_TIERS):
        alert_qs = access.alerts_for_user(user).filter(prediction__in=current, tier__in=ALERT_TIERS)
        if tier:
            alert_qs = alert_qs.filter(tier=tier)
        alerts = list(
            alert_qs.select_related("prediction", "patient")
            .annotate(tier_order=_TIER_ORDER)
            .order_by("tier_order", "-risk", "-created_at", "id")
        )

    low: list[Prediction] = []
    if tier in (None, "low"):
        low = list(
            current.filter(tier="low").select_related("patient").order_by("-risk", "unit", "bed", "id")
        )

    return Worklist(alerts=alerts, low=low, units=units, unit=unit, tier=tier)


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


def _observed_at(raw) -> datetime | None:
    if not raw or not isinstance(raw, str):
        return None
    try:
        return parse_datetime(raw)
    except ValueError:
        return None


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
            )
        )
    if shap_by_name:
        detail.rows.sort(key=lambda r: -abs(r.shap) if r.shap is not None else 0.0)
    return detail


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
