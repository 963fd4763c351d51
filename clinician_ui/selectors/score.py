"""Reads for one score's page (the alert and score pages, and the waterfall's JSON): the
explanation with its feature table, the patient's earlier scores and the alert's actions.

The prediction is read through patients.access by the view; the earlier scores start from it too."""

from dataclasses import dataclass, field
from datetime import datetime

from engine.headline import threshold_note
from engine.probability import probability_points, sigmoid
from engine.quality import quality_flags
from explanations.models import Explanation
from models_registry.baselines import Baseline, unit_baseline, version_baselines
from models_registry.models import ModelFeature
from patients.models import Alert, AlertAction, Prediction

from ..explanation_parts import (
    HeadlinePart,
    SimilarPart,
    StabilityPart,
    UncertaintyPart,
    headline_part,
    similar_part,
    stability_part,
    uncertainty_part,
)
from ..history import EARLIER_SCORES, Currency, FeatureTrend, earlier_scores, feature_trend, score_currency
from ..history import observed_at_parse as _observed_at


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
    # engine.quality's flag of this value ("recorded as 0 /min: check the source"), if any.
    quality_text: str = ""
    # bundle.yaml's fixed_reason: why a what-if may not change it.
    fixed_reason: str = ""

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
    # Whether this score is still the patient's present state (None: it is; set by score_page_get).
    currency: Currency | None = None
    # The explanation engine's results (None until the explanation is ready).
    uncertainty: UncertaintyPart | None = None
    stability: StabilityPart | None = None
    similar: SimilarPart | None = None
    abstain: bool = False
    abstain_reason: str = ""
    headline: HeadlinePart | None = None
    # Values read as impossible or as recording artefacts (engine.quality), shown, never hidden.
    quality_flags: list[dict] = field(default_factory=list)
    # Who the reference patients are, and what a simulated score is made of (bundle.yaml's
    # reference.description and simulation_note; "" when the bundle is silent).
    reference_description: str = ""
    simulation_note: str = ""
    # What reads the risk honestly: the unit's (or the reference set's) rate of the outcome, and why
    # the tier when the printed risk equals a printed threshold.
    baseline: Baseline | None = None
    threshold_note: str = ""

    @property
    def what_if_mutable(self) -> list[FeatureRow]:
        """The inputs a what-if may change, largest contribution first."""
        return [r for r in self.rows if r.mutable]

    @property
    def what_if_kinds(self) -> dict[str, str]:
        """Each input's kind, so the what-if result shows a binary value as yes/no, not 1/0."""
        return {r.name: r.kind for r in self.rows}

    @property
    def what_if_fixed(self) -> list[FeatureRow]:
        """The inputs a what-if may not change (age, sex: immutable in the schema)."""
        return [r for r in self.rows if not r.mutable]

    @property
    def points_by_name(self) -> dict[str, float]:
        """Each input's stored contribution in probability points, so the what-if result can show
        its change from the figure the inputs table prints."""
        return {r.name: r.probability_points for r in self.rows if r.probability_points is not None}

    @property
    def ready(self) -> bool:
        return self.status == Explanation.Status.READY

    @property
    def top_factor(self) -> FeatureRow | None:
        ranked = [r for r in self.rows if r.shap is not None]
        return max(ranked, key=lambda r: abs(r.shap)) if ranked else None

    @property
    def top_factors(self) -> list[FeatureRow]:
        """The bedside summary's factors: the three largest contributions, largest first."""
        ranked = [r for r in self.rows if r.shap is not None]
        return sorted(ranked, key=lambda r: -abs(r.shap))[:3]


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


def _explanation_status(explanation: Explanation | None) -> str:
    status = explanation.status if explanation else "missing"
    if status == Explanation.Status.READY and (
        explanation.contributions is None or explanation.base_value is None
    ):
        # Marked ready without its numbers: shown as failed, never as a partial chart.
        status = Explanation.Status.FAILED
    return status


def _attributions(explanation: Explanation) -> tuple[dict[str, float], dict[str, float]]:
    """Each input's SHAP value (log-odds) and probability points, as the worker stored them."""
    names = [c["name"] for c in explanation.contributions]
    values = [float(c["shap"]) for c in explanation.contributions]
    # The points the worker stored with the explanation (engine.probability.probability_points);
    # an explanation stored before points were kept gets them computed by the same function.
    stored = [c.get("points") for c in explanation.contributions]
    if any(p is None for p in stored):
        stored = probability_points(explanation.base_value, values).tolist()
    return dict(zip(names, values, strict=True)), dict(zip(names, [float(p) for p in stored], strict=True))


def _engine_parts(detail: ScoreDetail, explanation: Explanation, version, specs: list[ModelFeature]) -> None:
    """The ready explanation's base, uncertainty, stability, similar patients and headline."""
    prediction = detail.prediction
    detail.base_value = explanation.base_value
    detail.base_probability = float(sigmoid(explanation.base_value))
    detail.background_size = explanation.background_size or version.background_size
    labels = {f.name: f.label or f.name for f in specs}
    outcome = version.spec.get("outcome") or version.registered_model.outcome
    detail.uncertainty = uncertainty_part(explanation.uncertainty, outcome=outcome, labels=labels)
    detail.stability = stability_part(explanation.stability, labels=labels)
    detail.similar = similar_part(explanation.similar_patients, labels=labels)
    detail.abstain = explanation.abstain
    detail.abstain_reason = explanation.abstain_reason
    detail.headline = headline_part(
        risk=prediction.risk,
        outcome=outcome,
        horizon_hours=version.registered_model.horizon_hours,
        uncertainty=detail.uncertainty,
        similar=detail.similar,
    )


def _feature_row(
    feature: ModelFeature, entry: dict, *, detail: ScoreDetail, attributions, notes
) -> FeatureRow:
    """One input as posted, with its source, attribution and what the page says about it."""
    shap_by_name, points_by_name = attributions
    flag_text, fixed_reasons = notes
    value = entry.get("value")
    source = entry.get("source") or {}
    observed_at = _observed_at(entry.get("observed_at"))
    measured = value is not None
    return FeatureRow(
        name=feature.name,
        label=feature.label or feature.name,
        measured=measured,
        value_text=format_value(value, feature.kind) if measured else "not measured",
        unit=(entry.get("unit") or feature.unit) if measured else "",
        observed_at=observed_at,
        age_text=format_age(observed_at, detail.prediction.scored_at),
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
        quality_text=flag_text.get(feature.name, ""),
        fixed_reason=fixed_reasons.get(feature.name, ""),
    )


def score_detail_get(*, prediction: Prediction, alert: Alert | None = None) -> ScoreDetail:
    """A prediction (already checked by patients.access) with its explanation and feature table.

    Rows are in model input order until the explanation is ready, then by |contribution|."""
    explanation = Explanation.objects.filter(prediction=prediction).first()
    status = _explanation_status(explanation)
    version = prediction.model_version
    detail = ScoreDetail(
        prediction=prediction,
        alert=alert,
        explanation=explanation,
        status=status,
        background_description=version.background_description,
        simulated=prediction.simulated or prediction.patient.simulated,
        reference_description=str((version.spec.get("reference") or {}).get("description") or ""),
        simulation_note=str(version.spec.get("simulation_note") or ""),
        baseline=unit_baseline(version_baselines(version), prediction.unit),
        threshold_note=threshold_note(prediction.risk, high=version.tier_high, medium=version.tier_medium),
    )
    features = prediction.features or {}
    specs = list(version.features.filter(decision_time=True).order_by("position"))
    attributions: tuple[dict, dict] = ({}, {})
    if status == Explanation.Status.READY:
        attributions = _attributions(explanation)
        _engine_parts(detail, explanation, version, specs)
    stored_flags = explanation.quality_flags if explanation is not None else None
    # Explanations stored before flags were kept get them from the same function.
    detail.quality_flags = (
        stored_flags if stored_flags is not None else quality_flags(features, version.quality_specs(specs))
    )
    notes = ({f["feature"]: f["text"] for f in detail.quality_flags}, version.fixed_reasons())
    detail.rows = [
        _feature_row(f, features.get(f.name) or {}, detail=detail, attributions=attributions, notes=notes)
        for f in specs
    ]
    # "Sex: female — no" reads "no (male)" where the bundle says what 0 and 1 stand for.
    value_labels = version.binary_value_labels()
    for row in detail.rows:
        labels = value_labels.get(row.name)
        if labels and row.measured:
            said = labels.get(1 if format_value(row.raw_value, row.kind) == "yes" else 0)
            row.value_text = f"{row.value_text} ({said})" if said else row.value_text
    if attributions[0]:
        detail.rows.sort(key=lambda r: -abs(r.shap) if r.shap is not None else 0.0)
    return detail


def score_page_get(*, user, prediction: Prediction, alert: Alert | None = None) -> ScoreDetail:
    """What the alert and score pages show: score_detail_get plus the patient's earlier scores the
    user may see and, per feature, a trend mark against its most recent earlier measured value.
    A constant number of queries: the earlier scores are one query, whatever their number."""
    detail = score_detail_get(prediction=prediction, alert=alert)
    detail.earlier = earlier_scores(user=user, prediction=prediction, limit=EARLIER_SCORES)
    detail.currency = score_currency(user=user, prediction=prediction)
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
