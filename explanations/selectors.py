"""Reads: the API bodies of a stored prediction and of its explanation."""

from django.db.models import Sum
from django.urls import reverse

from common.timestamps import iso_utc
from models_registry.selectors import version_lookup
from patients.models import Prediction
from sightline.api_errors import ApiError

from .models import CohortAggregate, CohortSample, Explanation

# Parts of the explanation body computed by the worker: null (and named in `not_yet_computed`)
# until the explanation is ready, never filled with made-up numbers.
NOT_YET_COMPUTED = ["uncertainty", "similar_patients", "stability"]

# Which unit each number of the explanation body is in.
UNITS = {
    "risk": "probability (0-1)",
    "margin": "log-odds",
    "base_value": "log-odds",
    "features[].shap": "log-odds",
    "features[].points": (
        "probability points (0-1 scale), approximate: features added in order of decreasing |shap|; "
        "they add up to risk - sigmoid(base_value)"
    ),
    "uncertainty.interval": "probability (0-1)",
    "uncertainty.calibration.observed_rate": "proportion (0-1)",
    "similar_patients.neighbours[].risk": "probability (0-1)",
    "similar_patients.neighbours[].distance": "log-odds (euclidean distance between SHAP vectors)",
}


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
    points = {c["name"]: c.get("points") for c in explanation.contributions} if ready else {}
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
                "points": points.get(spec.name) if ready else None,
            }
        )
    return {
        "prediction_id": prediction.pk,
        "status": explanation.status if explanation else Explanation.Status.PENDING,
        "error": (explanation.error or None) if explanation else None,
        "model": {"name": version.registered_model.name, "version": version.version},
        "scored_at": iso_utc(prediction.scored_at),
        "risk": prediction.risk,
        "margin": prediction.margin,
        "tier": prediction.tier,
        "simulated": prediction.simulated,
        "base_value": explanation.base_value if ready else None,
        "additivity_error": explanation.additivity_error if ready else None,
        "units": "log-odds",
        "units_by_field": UNITS,
        "background": {
            "size": explanation.background_size if ready else version.background_size,
            "description": version.background_description,
        },
        "computed_at": iso_utc(explanation.finished_at) if ready else None,
        "features": features,
        # The model abstains: the UI shows abstain_reason instead of a confident risk.
        "abstain": explanation.abstain if ready else None,
        "abstain_reason": (explanation.abstain_reason or None) if ready else None,
        "uncertainty": explanation.uncertainty if ready else None,
        "similar_patients": _similar_body(explanation.similar_patients, version) if ready else None,
        "stability": explanation.stability if ready else None,
        "not_yet_computed": [] if ready else NOT_YET_COMPUTED,
    }


def _similar_body(similar: dict | None, version) -> dict | None:
    """Similar patients with feature labels; they are reference patients (the held-out labelled
    set of the training environment), not patients of this hospital."""
    if similar is None:
        return None
    labels = {f.name: f.label for f in version.input_features()}
    neighbours = [
        {
            **n,
            "shared_features": [
                {**f, "label": labels.get(f["name"], f["name"])} for f in n["shared_features"]
            ],
        }
        for n in similar["neighbours"]
    ]
    return {**similar, "source": "reference set", "neighbours": neighbours}


def _sliced(queryset, *, units: list[str] | None, shift: str | None, day_from, day_to):
    """The rows of the slices asked for (units None = every unit; no shift or day = every one)."""
    if units is not None:
        queryset = queryset.filter(unit__in=units)
    if shift:
        queryset = queryset.filter(shift=shift)
    if day_from:
        queryset = queryset.filter(day__gte=day_from)
    if day_to:
        queryset = queryset.filter(day__lte=day_to)
    return queryset


def _cohort_importance(aggregates, labels: dict[str, str]) -> list[dict]:
    """Per feature: count, mean |SHAP| and signed mean SHAP (log-odds), most important first."""
    sums = aggregates.values("feature").annotate(n=Sum("count"), t=Sum("total"), a=Sum("total_abs"))
    features = [
        {
            "name": row["feature"],
            "label": labels.get(row["feature"], row["feature"]),
            "count": row["n"],
            "mean_abs_shap": row["a"] / row["n"] if row["n"] else None,
            "mean_shap": row["t"] / row["n"] if row["n"] else None,
        }
        for row in sums
    ]
    features.sort(key=lambda f: -(f["mean_abs_shap"] or 0))
    return features


def _sample_body(sample: list[tuple], names: list[str]) -> dict:
    return {
        "n": len(sample),
        "feature_names": names,
        "prediction_ids": [s[0] for s in sample],
        "unit": [s[1] for s in sample],
        "shift": [s[2] for s in sample],
        "day": [s[3].isoformat() for s in sample],
        # values[i][j]: feature j of sampled prediction i (encoded model input; null = not measured)
        "values": [s[4] for s in sample],
        "shap": [s[5] for s in sample],
    }


def cohort_summary(
    *,
    version,
    units: list[str] | None,
    shift: str | None = None,
    day_from=None,
    day_to=None,
    sample_max: int = 1000,
) -> dict:
    """Cohort SHAP importance for a version over the slices asked for (units None = every unit).

    `features`: per feature, count, mean |SHAP| and signed mean (log-odds), most important first.
    `sample`: at most `sample_max` explained predictions of those slices (the smallest hash
    priorities: an unbiased sample), with each feature's value (null = not measured) and SHAP, for
    beeswarm and dependence plots.
    """
    where = {"units": units, "shift": shift, "day_from": day_from, "day_to": day_to}
    labels = {f.name: f.label for f in version.input_features()}
    names = list(labels)
    features = _cohort_importance(_sliced(CohortAggregate.objects.filter(version=version), **where), labels)
    sample = list(
        _sliced(CohortSample.objects.filter(version=version), **where)
        .order_by("priority", "prediction_id")
        .values_list("prediction_id", "unit", "shift", "day", "values", "shap")[:sample_max]
    )
    return {
        "model": {"name": version.registered_model.name, "version": version.version},
        "slice": {
            "units": units,
            "shift": shift,
            "from": day_from.isoformat() if day_from else None,
            "to": day_to.isoformat() if day_to else None,
        },
        "units_by_field": {"mean_abs_shap": "log-odds", "mean_shap": "log-odds", "sample.shap": "log-odds"},
        "explanations": max((f["count"] for f in features), default=0),
        "features": features,
        "sample": _sample_body(sample, names),
    }


def version_for_cohort(*, name: str, version: int | None):
    """The named model's version (the production one when none is given); 400 naming the field."""
    found = version_lookup(name=name, version=version or None)
    if found is None:
        field = "version" if version else "model"
        raise ApiError(
            code="invalid",
            detail=f"No such model version: {name} {version or '(production)'}.",
            fields={field: ["Not found."]},
        )
    return found
