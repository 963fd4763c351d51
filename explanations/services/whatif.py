"""What-if: the risk and SHAP values recomputed with some mutable inputs changed (synchronous)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rest_framework import status

from engine import treeshap as core
from models_registry.serving import EncodingError, serving_model
from patients.models import Prediction
from sightline.api_errors import ApiError


def _invalid(field: str, message: str, code: str = "invalid") -> ApiError:
    return ApiError(code=code, detail=f"{field}: {message}", fields={field: [message]})


def _check_value(feature, value: Any) -> None:
    field = f"changes.{feature.name}"
    if value is None:
        raise _invalid(field, "A what-if sets a value; 'not measured' cannot be simulated.")
    if feature.kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _invalid(field, "A number is expected.")
        low, high = feature.range_min, feature.range_max
        if (low is not None and value < low) or (high is not None and value > high):
            raise _invalid(
                field, f"{value} is outside the plausible range [{low:g}, {high:g}] {feature.unit}."
            )
    elif feature.kind == "binary":
        if not isinstance(value, bool):
            raise _invalid(field, "true or false is expected.")
    elif value not in (feature.categories or []):
        raise _invalid(field, f"One of {', '.join(feature.categories or [])} is expected.")


def _check_changes(version, features: dict, changes: dict) -> None:
    """Only mutable decision-time features of the version, each within its plausible range."""
    for name, value in changes.items():
        feature = features.get(name)
        field = f"changes.{name}"
        if feature is None:
            raise _invalid(field, f"'{name}' is not a feature of {version}.", code="unknown_feature")
        if not feature.decision_time:
            raise _invalid(
                field, f"'{name}' is known only after the decision point; it is not a model input."
            )
        if not feature.mutable:
            reason = version.fixed_reasons().get(name)
            raise _invalid(
                field,
                f"'{feature.label}' cannot be changed in a what-if" + (f": {reason}." if reason else "."),
                code="immutable_feature",
            )
        _check_value(feature, value)


def _explain_both(serving, original_values: dict, changed_values: dict):
    """(margins, attribution) of the original row and the changed row, SHAP additivity checked."""
    try:
        rows = np.vstack([serving.encode(original_values), serving.encode(changed_values)])
    except EncodingError as exc:
        raise _invalid(f"changes.{exc.feature}", str(exc)) from None
    margins = serving.predict_margin(rows)
    attribution = core.explain(serving.explainer, rows)
    try:
        core.check_additivity(attribution, margins)
    except core.AdditivityError as exc:
        raise ApiError(
            code="additivity_failed", detail=str(exc), status_code=status.HTTP_422_UNPROCESSABLE_ENTITY
        ) from None
    return margins, attribution


def _feature_rows(
    serving, attribution, features: dict, changes: dict, original_values: dict, changed_values: dict
) -> list[dict]:
    """Each model input's value before and after, its SHAP value and points after, and the SHAP change."""
    points = [core.probability_points(attribution.base_value, attribution.values[i]) for i in (0, 1)]
    out_features = []
    for j, name in enumerate(serving.feature_names):
        before, after = attribution.values[0, j], attribution.values[1, j]
        out_features.append(
            {
                "name": name,
                "label": features[name].label,
                "value": changed_values.get(name),
                "original_value": original_values.get(name),
                "changed": name in changes,
                "shap": float(after),
                "points": float(points[1][j]),
                "shap_delta": float(after - before),
            }
        )
    return out_features


def prediction_what_if(*, prediction: Prediction, changes: Any) -> dict:
    """Recompute risk, tier and SHAP with `changes` ({feature: value}) applied to the prediction's
    inputs. Only mutable decision-time features within their plausible range may change; nothing
    is stored. Raises ApiError (400) naming the field."""

    if not isinstance(changes, dict) or not changes:
        raise _invalid("changes", 'An object of feature changes is expected, e.g. {"lactate": 2.0}.')
    version = prediction.model_version
    features = {f.name: f for f in version.features.all()}
    _check_changes(version, features, changes)

    serving = serving_model(version)
    original_values = {name: (entry or {}).get("value") for name, entry in prediction.features.items()}
    changed_values = {**original_values, **changes}
    margins, attribution = _explain_both(serving, original_values, changed_values)
    risks = np.asarray(core.sigmoid(margins), dtype=np.float64)
    out_features = _feature_rows(serving, attribution, features, changes, original_values, changed_values)
    risk = float(risks[1])
    return {
        "prediction_id": prediction.pk,
        "hypothetical": True,
        "changes": {
            name: {"from": original_values.get(name), "to": value} for name, value in changes.items()
        },
        "risk": risk,
        "tier": version.tier_for(risk),
        "margin": float(margins[1]),
        "base_value": attribution.base_value,
        "original": {
            "risk": float(risks[0]),
            "tier": version.tier_for(float(risks[0])),
            "margin": float(margins[0]),
        },
        "delta": {"risk": float(risks[1] - risks[0]), "margin": float(margins[1] - margins[0])},
        "units": {
            "risk": "probability",
            "margin": "log-odds",
            "shap": "log-odds",
            "points": "probability points",
        },
        "background_size": attribution.background_size,
        "features": out_features,
    }
