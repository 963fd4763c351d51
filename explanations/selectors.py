"""Reads: the API bodies of a stored prediction and of its explanation."""

from django.urls import reverse

from .models import Explanation, Prediction

# Parts of CONTRACT.md's explanation body that later work computes; until then they are null
# and named here, never filled with made-up numbers.
NOT_YET_COMPUTED = ["uncertainty", "similar_patients", "stability"]


def explanation_url(prediction_id: int) -> str:
    return reverse("prediction-explanation", args=[prediction_id])


def alert_url(alert_id: int) -> str:
    # The clinician UI's alert page.
    return f"/alerts/{alert_id}/"


def prediction_body(prediction: Prediction) -> dict:
    """The ingest response: `{"id", "risk", "tier", "explanation": {...}, "alert": {...} | null}`."""
    explanation = getattr(prediction, "explanation", None)
    alert = getattr(prediction, "alert", None)
    return {
        "id": prediction.pk,
        "risk": prediction.risk,
        "tier": prediction.tier,
        "explanation": {
            "status": explanation.status if explanation else Explanation.Status.PENDING,
            "url": explanation_url(prediction.pk),
        },
        "alert": {"id": alert.pk, "url": alert_url(alert.pk)} if alert else None,
    }


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def explanation_body(prediction: Prediction) -> dict:
    """A prediction's stored explanation (CONTRACT.md section 2, GET .../explanation/).

    One entry per model input, in the model's order. A value that was not sent is null with
    "measured": false ("not measured"); a feature's shap is null until the explanation is ready.
    SHAP values and the base value are in log-odds: base_value + sum(shap) == margin.
    """
    version = prediction.model_version
    explanation = Explanation.objects.filter(prediction=prediction).first()
    ready = explanation is not None and explanation.status == Explanation.Status.READY
    shap = {c["name"]: c["shap"] for c in explanation.contributions} if ready else {}
    features = []
    for spec in version.input_features():
        stored = prediction.features.get(spec.name) or {}
        value = stored.get("value")
        features.append(
            {
                "name": spec.name,
                "label": spec.label,
                "value": value,
                "measured": value is not None,
                "unit": spec.unit,
                "observed_at": stored.get("observed_at"),
                "source": stored.get("source") or ({"system": spec.source} if spec.source else None),
                "code": spec.code or None,
                "shap": shap.get(spec.name) if ready else None,
            }
        )
    return {
        "prediction_id": prediction.pk,
        "status": explanation.status if explanation else Explanation.Status.PENDING,
        "error": (explanation.error or None) if explanation else None,
        "model": {"name": version.registered_model.name, "version": version.version},
        "scored_at": _iso(prediction.scored_at),
        "risk": prediction.risk,
        "margin": prediction.margin,
        "tier": prediction.tier,
        "simulated": prediction.simulated,
        "base_value": explanation.base_value if ready else None,
        "additivity_error": explanation.additivity_error if ready else None,
        "units": "log-odds",
        "background": {
            "size": explanation.background_size if ready else version.background_size,
            "description": version.background_description,
        },
        "computed_at": _iso(explanation.finished_at) if ready else None,
        "features": features,
        "uncertainty": None,
        "similar_patients": None,
        "stability": None,
        "not_yet_computed": NOT_YET_COMPUTED,
    }
