"""ORM factories for the clinician UI tests: a registered model version with its feature schema,
patients, and predictions with their explanation and alert, built directly (no ingest, no worker).

Contributions are made to add up exactly: base_value + sum(shap) == margin == logit(risk).
"""

import itertools
import math
from datetime import datetime, timedelta

from django.utils import timezone

from explanations.models import Explanation
from explanations.services.current import patient_current_advance
from models_registry.models import ModelFeature, ModelVersion, RegisteredModel
from patients.models import Alert, Patient, Prediction

_seq = itertools.count(1)

BASE_VALUE = -1.2

# name, label, unit, source, kind, range, mutable, weight of the contribution (share of margin - base)
FEATURES = [
    ("age", "Age", "years", "ADT", "numeric", (16, 110), False, 0.3),
    ("lactate", "Lactate", "mmol/L", "LIS", "numeric", (0.1, 30), True, 1.0),
    ("map", "Mean arterial pressure", "mmHg", "monitor", "numeric", (10, 200), True, 0.6),
    ("creatinine", "Creatinine", "mg/dL", "LIS", "numeric", (0.1, 20), True, 0.4),
    ("urine_output", "Urine output (24 h)", "mL", "EHR", "numeric", (0, 10000), True, 0.1),
    ("ventilated", "Mechanical ventilation", "", "EHR", "binary", (0, 1), True, -0.5),
]
# Documented in the bundle but known only after the decision point: never shown as an input.
LEAKAGE_FEATURE = ("discharge_disposition", "Discharge disposition", "", "ADT", "categorical")


def model_version_create(*, name: str = "icu-mortality-30d", version: int = 1) -> ModelVersion:
    registered, _ = RegisteredModel.objects.get_or_create(
        name=name, defaults={"outcome": "death within 30 days of ICU admission", "horizon_hours": 720}
    )
    mv = ModelVersion.objects.create(
        registered_model=registered,
        version=version,
        status=ModelVersion.Status.CANDIDATE,
        model_format="xgboost",
        spec={"name": name, "outcome": "death within 30 days of ICU admission"},
        tier_high=0.5,
        tier_medium=0.25,
        artifacts={},
        bundle_sha256="0" * 64,
        background_description="200 admissions, stratified by unit",
        background_size=200,
        reference_size=100,
    )
    for position, (fname, label, unit, source, kind, (low, high), mutable, _w) in enumerate(FEATURES):
        ModelFeature.objects.create(
            version=mv,
            position=position,
            name=fname,
            label=label,
            unit=unit,
            source=source,
            kind=kind,
            range_min=low,
            range_max=high,
            mutable=mutable,
        )
    fname, label, unit, source, kind = LEAKAGE_FEATURE
    ModelFeature.objects.create(
        version=mv,
        position=len(FEATURES),
        name=fname,
        label=label,
        unit=unit,
        source=source,
        kind=kind,
        categories=["home", "facility", "died"],
        decision_time=False,
        mutable=False,
    )
    return mv


def patient_create(
    *, unit: str = "MICU", bed: str = "", display_name: str = "", simulated: bool = False
) -> Patient:
    n = next(_seq)
    return Patient.objects.create(
        external_id=f"P-{n:04d}",
        display_name=display_name or f"Patient, Test {n}",
        unit=unit,
        bed=bed or str(n),
        simulated=simulated,
    )


def feature_payload(scored_at: datetime, **overrides) -> dict:
    """A prediction's features: lactate with a source url, urine output not measured."""
    observed = (scored_at - timedelta(minutes=45)).isoformat()
    features = {
        "age": {"value": 67, "unit": "years", "observed_at": None, "source": {"system": "ADT"}},
        "lactate": {
            "value": 4.2,
            "unit": "mmol/L",
            "observed_at": observed,
            "source": {
                "system": "LIS",
                "reference": "Observation/lab-998",
                "url": "https://ehr.example.org/Observation/lab-998",
            },
        },
        "map": {
            "value": 58.0,
            "unit": "mmHg",
            "observed_at": (scored_at - timedelta(minutes=5)).isoformat(),
            "source": {"system": "monitor", "reference": "Observation/vitals-17"},
        },
        "creatinine": {
            "value": 2.1,
            "unit": "mg/dL",
            "observed_at": (scored_at - timedelta(hours=3, minutes=10)).isoformat(),
            "source": {"system": "LIS", "reference": "Observation/lab-991", "url": "javascript:alert(1)"},
        },
        "urine_output": {"value": None},
        "ventilated": {"value": 1, "observed_at": observed, "source": {"system": "EHR"}},
    }
    features.update(overrides)
    return features


def contributions_for(risk: float, base_value: float = BASE_VALUE) -> list[dict]:
    margin = math.log(risk / (1 - risk))
    weights = [w for *_rest, w in FEATURES]
    total = sum(weights)
    return [
        {"name": name, "shap": (margin - base_value) * w / total}
        for (name, *_rest), w in zip(FEATURES, weights, strict=True)
    ]


def prediction_create(
    *,
    model_version: ModelVersion,
    patient: Patient | None = None,
    unit: str = "MICU",
    risk: float = 0.71,
    scored_at: datetime | None = None,
    explanation: str | None = Explanation.Status.READY,
    features: dict | None = None,
    simulated: bool = False,
) -> Prediction:
    """A prediction with its explanation (status `explanation`, None for no row) and, at medium or
    high tier, its alert."""
    patient = patient or patient_create(unit=unit, simulated=simulated)
    scored_at = scored_at or timezone.now() - timedelta(minutes=10)
    tier = model_version.tier_for(risk)
    prediction = Prediction.objects.create(
        registered_model=model_version.registered_model,
        model_version=model_version,
        external_id=f"run-{next(_seq)}/{patient.external_id}",
        patient=patient,
        unit=patient.unit,
        bed=patient.bed,
        scored_at=scored_at,
        risk=risk,
        margin=math.log(risk / (1 - risk)),
        tier=tier,
        features=features if features is not None else feature_payload(scored_at),
        payload_sha256="0" * 64,
        simulated=simulated,
    )
    if explanation is not None:
        ready = explanation == Explanation.Status.READY
        Explanation.objects.create(
            prediction=prediction,
            status=explanation,
            base_value=BASE_VALUE if ready else None,
            contributions=contributions_for(risk) if ready else None,
            additivity_error=0.0 if ready else None,
            background_size=model_version.background_size if ready else None,
            error="TreeSHAP failed: test" if explanation == Explanation.Status.FAILED else "",
        )
    if tier in ("medium", "high"):
        Alert.objects.create(prediction=prediction, patient=patient, unit=patient.unit, tier=tier, risk=risk)
    # As ingest does, once the alert exists: the worklist reads the patient's current score, and
    # its alert, from this pointer.
    patient_current_advance(patient_id=patient.pk, prediction_id=prediction.pk, scored_at=scored_at)
    return prediction


def engine_results_set(
    prediction: Prediction,
    *,
    abstain: bool = False,
    abstain_reason: str = "",
    unstable: bool = False,
    events: int = 6,
) -> Explanation:
    """Store explanation-engine results on a ready explanation, in the shapes engine.profile
    writes (uncertainty, similar patients, stability): for page tests that need no trained model."""
    risk = prediction.risk
    uncertainty = {
        "interval": {"method": "venn-abers", "low": risk - 0.07, "high": risk + 0.05, "units": "probability"},
        "calibration": {
            "bin": [0.7, 0.8],
            "n": 143,
            "events": 97,
            "observed_rate": 0.68,
            "ci": [0.61, 0.74],
            "ci_level": 0.95,
            "summary": "Of 143 reference patients scored 0.70-0.80, 68% (61%-74%) had the outcome (...).",
        },
        "conformal": {"level": 0.9, "outcome_set": ["event"], "coverage_measured": 0.91},
        "ood": {
            "distance": 1.2,
            "reference_percentile": 99.7 if abstain else 40.0,
            "threshold_percentile": 99,
            "flag": abstain,
        },
        "key_features": {"names": ["lactate", "map", "age"], "not_measured": []},
        "abstain": abstain,
        "abstain_reason": abstain_reason,
    }
    neighbours = [
        {
            "reference_row": row,
            "distance": 0.1 * (row + 1),
            "outcome": row < events,
            "risk": 0.6 + row / 100,
            "unit": "SICU" if row % 2 else "MICU",
            "shared_features": [
                {"name": "lactate", "direction": "raises risk"},
                {"name": "map", "direction": "lowers risk"},
            ],
        }
        for row in range(10)
    ]
    similar = {
        "k": 10,
        "events": events,
        "neighbours": neighbours,
        "summary": f"{events} of 10 similar patients had the outcome (death within 30 days).",
        "space": "SHAP (log-odds), euclidean",
    }
    stability = {
        "top_k": 5,
        "perturbations": 20,
        "agreement": 0.64 if unstable else 0.93,
        "min_agreement": 0.4 if unstable else 0.8,
        "identical_share": 0.2 if unstable else 0.7,
        "threshold": 0.8,
        "unstable": unstable,
        "changed_features": {"creatinine": 9, "ventilated": 4} if unstable else {},
        "background_size": 50,
    }
    Explanation.objects.filter(prediction=prediction).update(
        uncertainty=uncertainty,
        similar_patients=similar,
        stability=stability,
        abstain=abstain,
        abstain_reason=abstain_reason,
    )
    return Explanation.objects.get(prediction=prediction)
