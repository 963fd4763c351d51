"""Registry reads: the model list, one version, its model card and the card's chart data.

The card holds no patient data: only the bundle's metadata, schema and aggregate figures on the
reference set, so any logged-in role may read it.
"""

from __future__ import annotations

from django.core.cache import cache
from django.db.models import Prefetch, QuerySet
from django.http import Http404

from common.timestamps import iso_utc
from engine import treeshap as core
from engine.tiers import ALERT_TIERS
from models_registry.bundle_checks import load_challenger
from models_registry.card_subgroups import protected_characteristics, subgroup_tables
from models_registry.models import ModelFeature, ModelVersion, Promotion, RegisteredModel
from models_registry.serving import ArtifactTampered, _artifact_bytes

# charts.json is a pure function of an immutable version: cached per version and bundle digest.
CHARTS_CACHE_SECONDS = 7 * 24 * 3600

CHECK_TITLES = {
    "feature_names_match": "Model inputs match the feature schema (names, order, no leakage features)",
    "reproduces_expected_risk": "Serving stack reproduces the training environment's risk",
    "shap_additivity": "SHAP values add up to the model output",
    "shap_engine": "SHAP engine proven on this bundle (fast engine equal to shap, or shap itself)",
    "model_randomisation": "Explanations depend on what the model learned (randomised-leaves sanity check)",
    "background_documentation": "SHAP background documented and like the reference set",
    "challenger": "Challenger scores the reference set",
    "subgroup_disparity": (
        "Subgroups: calibration in the large, AUROC interval below the overall one, alert-rate ratio"
    ),
}
DIFF_METRICS = ("auroc", "auprc", "brier", "ece")
FEATURE_FIELDS = (
    "label",
    "unit",
    "source",
    "code",
    "kind",
    "categories",
    "range",
    "decision_time",
    "mutable",
)


def model_list() -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.order_by("name").prefetch_related(
        Prefetch("versions", queryset=ModelVersion.objects.order_by("-version"))
    )


def version_lookup(
    *,
    name: str | None = None,
    model: RegisteredModel | None = None,
    version: int | None = None,
    detail: bool = False,
) -> ModelVersion | None:
    """The one name -> version lookup: version `version` of the model (by name or object), or its
    production version when no number is given; None when there is no such version. `detail`
    also loads who registered and promoted it and its features (the model card)."""
    versions = ModelVersion.objects.select_related("registered_model")
    if detail:
        versions = versions.select_related("registered_by", "promoted_by").prefetch_related("features")
    versions = (
        versions.filter(registered_model=model)
        if model is not None
        else versions.filter(registered_model__name=name)
    )
    if version is None:
        return versions.filter(status=ModelVersion.Status.PRODUCTION).first()
    return versions.filter(version=version).first()


def production_versions() -> QuerySet[ModelVersion]:
    """Every model's production version, by model name."""
    return (
        ModelVersion.objects.filter(status=ModelVersion.Status.PRODUCTION)
        .select_related("registered_model")
        .order_by("registered_model__name")
    )


def model_version_get(*, name: str, version: int) -> ModelVersion:
    found = version_lookup(name=name, version=version, detail=True)
    if found is None:
        raise Http404(f"No version {version} of model {name!r}.")
    return found


def _username(user) -> str | None:
    return user.get_username() if user is not None else None


def _feature(feature: ModelFeature) -> dict:
    return {
        "name": feature.name,
        "label": feature.label,
        "unit": feature.unit,
        "source": feature.source,
        "code": feature.code,
        "kind": feature.kind,
        "categories": list(feature.categories or []),
        "range": [feature.range_min, feature.range_max] if feature.range_min is not None else None,
        "decision_time": feature.decision_time,
        "mutable": feature.mutable,
    }


def _checks(version: ModelVersion) -> list[dict]:
    out = []
    for name, figures in (version.checks or {}).items():
        if not isinstance(figures, dict):
            continue  # reference_auroc: a figure, shown with the performance
        out.append(
            {
                "name": name,
                "title": CHECK_TITLES.get(name, name.replace("_", " ")),
                "status": "flag" if figures.get("flagged") or not figures.get("passed", True) else "pass",
                "figures": _engine_figures(figures) if name == "shap_engine" else figures,
            }
        )
    return out


def explained_by(version: ModelVersion) -> dict:
    """The SHAP engine that explains `version` (what serving uses), with the reason when it is shap."""
    figures = (version.checks or {}).get("shap_engine")
    if not figures:
        return {
            "engine": core.ENGINE_REFERENCE,
            "name": core.ENGINE_NAMES[core.ENGINE_REFERENCE],
            "reason": "registered before the fast engine's proof existed; register it again to prove it",
        }
    engine = figures.get("engine", core.ENGINE_REFERENCE)
    return {
        "engine": engine,
        "name": core.ENGINE_NAMES.get(engine, engine),
        "reason": figures.get("reason", ""),
    }


def _engine_figures(figures: dict) -> dict:
    """The engine check with the engine's name and its differences in scientific notation (`shown`)."""
    shown = {
        key: f"{figures[key]:.1e}"
        for key in ("max_abs_value_diff", "base_diff", "reference_max_additivity_error")
        if isinstance(figures.get(key), float)
    }
    name = core.ENGINE_NAMES.get(figures.get("engine"), figures.get("engine"))
    return {**figures, "engine_name": name, "shown": shown}


def _version_diff(version: ModelVersion, previous: ModelVersion | None) -> dict | None:
    if previous is None:
        return None
    now = {f["name"]: f for f in map(_feature, version.features.all())}
    before = {f["name"]: f for f in map(_feature, previous.features.all())}
    changed = []
    for name in sorted(set(now) & set(before)):
        fields = {
            field: {"previous": before[name][field], "current": now[name][field]}
            for field in FEATURE_FIELDS
            if before[name][field] != now[name][field]
        }
        if fields:
            changed.append({"name": name, "changes": fields})
    metrics_now = (version.metrics or {}).get("model", {})
    metrics_before = (previous.metrics or {}).get("model", {})
    deltas = {}
    for metric in DIFF_METRICS:
        current = (metrics_now.get(metric) or {}).get("value")
        earlier = (metrics_before.get(metric) or {}).get("value")
        deltas[metric] = {
            "previous": earlier,
            "current": current,
            "delta": round(current - earlier, 4) if current is not None and earlier is not None else None,
        }
    for tier in ALERT_TIERS:
        current = (metrics_now.get("alerts_per_100", {}).get(tier) or {}).get("value")
        earlier = (metrics_before.get("alerts_per_100", {}).get(tier) or {}).get("value")
        deltas[f"alerts_per_100_{tier}"] = {
            "previous": earlier,
            "current": current,
            "delta": round(current - earlier, 2) if current is not None and earlier is not None else None,
        }
    return {
        "previous_version": previous.version,
        "features_added": sorted(set(now) - set(before)),
        "features_removed": sorted(set(before) - set(now)),
        "features_changed": changed,
        "metrics": deltas,
        "tiers": {
            "previous": previous.thresholds,
            "current": version.thresholds,
        },
    }


def _cohort(version: ModelVersion, spec: dict, model_metrics: dict) -> dict:
    """The reference set: size, label and its rate, and its shares of patients by unit and shift."""
    background = (version.checks or {}).get("background_documentation", {})
    return {
        "reference_size": version.reference_size,
        "label": (spec.get("reference") or {}).get("label"),
        "events": model_metrics.get("events"),
        "label_rate": model_metrics.get("label_rate"),
        "units": {
            unit: shares["reference"] for unit, shares in background.get("unit", {}).get("shares", {}).items()
        },
        "shifts": {
            shift: shares["reference"]
            for shift, shares in background.get("shift", {}).get("shares", {}).items()
        },
    }


def _promotions(version: ModelVersion) -> list[dict]:
    promotions = (
        Promotion.objects.filter(version=version).select_related("user").order_by("promoted_at", "id")
    )
    return [
        {
            "promoted_at": iso_utc(p.promoted_at),
            "user": _username(p.user),
            "gate_passed": p.gate_passed,
            "overridden": p.overridden,
            "override_reason": p.override_reason,
        }
        for p in promotions
    ]


def model_card(version: ModelVersion) -> dict:
    """Everything the model card shows, as plain JSON: the page and the API serve the same dict."""
    spec = version.spec or {}
    performance = version.metrics or {}
    model_metrics = performance.get("model", {})
    previous = (
        version.registered_model.versions.filter(version__lt=version.version).order_by("-version").first()
    )
    alerts = model_metrics.get("alerts_per_100", {})
    features = [_feature(f) for f in version.features.all()]
    return {
        "name": version.registered_model.name,
        "version": version.version,
        "status": version.status,
        "model_format": version.model_format,
        "registered_at": iso_utc(version.registered_at),
        "registered_by": _username(version.registered_by),
        "promoted_at": iso_utc(version.promoted_at),
        "promoted_by": _username(version.promoted_by),
        "intended_use": str(spec.get("intended_use") or ""),
        "outcome": version.registered_model.outcome,
        "horizon_hours": version.registered_model.horizon_hours,
        "known_failure_modes": str(spec.get("known_failure_modes") or ""),
        "cohort": _cohort(version, spec, model_metrics),
        "background": {"size": version.background_size, "description": version.background_description},
        "features": features,
        "protected_characteristics": protected_characteristics(spec, features),
        "subgroups": version.subgroups or {},
        "subgroup_tables": subgroup_tables(version.subgroups),
        "tiers": {
            tier: {"threshold": threshold, "alerts_per_100": alerts.get(tier)}
            for tier, threshold in version.thresholds.items()
        },
        "performance": performance,
        "checks": _checks(version),
        "explained_by": explained_by(version),
        "gate": version.gate or {},
        "promotions": _promotions(version),
        "artifacts": version.artifacts,
        "bundle_sha256": version.bundle_sha256,
        "diff": _version_diff(version, previous),
    }


def _curve_points(labels, risk) -> dict:
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(labels, risk, drop_intermediate=True)
    precision, recall, _ = precision_recall_curve(labels, risk, drop_intermediate=True)
    return {
        "roc": {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]},
        "pr": {
            "recall": [round(float(v), 5) for v in recall],
            "precision": [round(float(v), 5) for v in precision],
        },
    }


def reference_curves(version: ModelVersion) -> list[dict]:
    """ROC and precision-recall curves on the reference set (sklearn), model and challenger. The
    reference file is read from the model store and its sha256 verified (ArtifactTampered if not)."""
    import io

    import numpy as np
    import pandas as pd

    spec = version.spec
    reference = pd.read_parquet(io.BytesIO(_artifact_bytes(version, spec["reference"]["path"])))
    labels = reference[spec["reference"]["label"]].to_numpy(dtype=np.float64)
    curves = [{"name": "model", **_curve_points(labels, reference["expected_risk"].to_numpy(dtype=float))}]
    challenger = spec.get("challenger")
    if challenger:
        estimator = load_challenger(_artifact_bytes(version, challenger["path"]), challenger["path"])
        inputs = reference[[f.name for f in version.input_features()]]
        curves.append({"name": "challenger", **_curve_points(labels, estimator.predict_proba(inputs)[:, 1])})
    return curves


def model_card_charts_cached(version: ModelVersion) -> dict:
    """charts.json for a version, from the Django cache when present (versions never change)."""
    key = f"sightline:model-card-charts:v1:{version.pk}:{version.bundle_sha256}"
    charts = cache.get(key)
    if charts is None:
        try:
            curves = reference_curves(version)
        except ArtifactTampered as exc:
            # Not cached: the figures stored at registration are still shown, the curves are not.
            return {**model_card_charts(model_card(version)), "curves_error": str(exc)}
        charts = model_card_charts(model_card(version), curves=curves)
        cache.set(key, charts, CHARTS_CACHE_SECONDS)
    return charts


def model_card_charts(card: dict, *, curves: list[dict] | None = None) -> dict:
    """Exactly what the card's Plotly figures need: the reliability diagram, the
    discrimination/calibration figures with their 95% intervals (model, challenger and, when the
    bundle asks for it, the cross-fitted recalibrated risk) and the ROC and precision-recall curves."""
    series = []
    for who, summary in card["performance"].items():
        bins = [b for b in summary.get("reliability", []) if b["count"]]
        series.append(
            {
                "name": who,
                "mean_predicted": [b["mean_predicted"] for b in bins],
                "observed_rate": [b["observed_rate"]["value"] for b in bins],
                "observed_low": [b["observed_rate"]["ci_low"] for b in bins],
                "observed_high": [b["observed_rate"]["ci_high"] for b in bins],
                "count": [b["count"] for b in bins],
            }
        )
    metrics = []
    for metric in DIFF_METRICS:
        for who, summary in card["performance"].items():
            figure = summary.get(metric)
            if figure:
                metrics.append({"metric": metric, "who": who, **figure})
    return {"reliability": series, "metrics": metrics, "curves": curves or []}
