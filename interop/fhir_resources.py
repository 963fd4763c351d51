"""FHIR R4 out (CONTRACT.md section 5): a prediction as a RiskAssessment, errors as an
OperationOutcome. Validated with `fhir.resources` (its R4B models; RiskAssessment and
OperationOutcome have the same structure in R4 4.0.1 and R4B 4.3, so an R4 client reads them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.riskassessment import RiskAssessment

from common.timestamps import iso_utc
from engine.tiers import Tier
from patients.models import Prediction

LOINC = "http://loinc.org"
# Feature codes (in a bundle's schema) that map a feature from the Patient resource; see the docstring.
PATIENT_BIRTH_DATE = "FHIR:Patient.birthDate"
PATIENT_GENDER = "FHIR:Patient.gender"
# Patient.gender (http://hl7.org/fhir/administrative-gender) -> the binary feature "female".
# "other" and "unknown" are valid codes a yes/no "female" cannot express: not measured.
GENDER_FEMALE: dict[str, bool | None] = {"female": True, "male": False, "other": None, "unknown": None}
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
TIER_SYSTEM = "urn:sightline:tier"
MODEL_SYSTEM = "urn:sightline:model"
PATIENT_SYSTEM = "urn:sightline:patient"
ENCOUNTER_SYSTEM = "urn:sightline:encounter"
# FHIR's qualitative risk codes for our tiers.
QUALITATIVE = {Tier.LOW: "low", Tier.MEDIUM: "moderate", Tier.HIGH: "high"}
ACCEPTED_STATUS = {"final", "amended", "corrected", "preliminary"}
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
MAX_ISSUES = 20


@dataclass
class FhirError(Exception):
    """An error answered with an OperationOutcome: HTTP status, FHIR issue type, message, where."""

    status: int
    code: str
    diagnostics: str
    expression: list[str] = field(default_factory=list)
    more: list[dict] = field(default_factory=list)

    def __str__(self) -> str:
        return self.diagnostics


def operation_outcome(issues: list[dict]) -> dict:
    """A validated OperationOutcome from issues {"code", "diagnostics", "expression"}."""
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": i["code"], "diagnostics": i["diagnostics"]}
            | ({"expression": i["expression"]} if i.get("expression") else {})
            for i in issues
        ],
    }
    OperationOutcome.model_validate(body)
    return body


def error_outcome(error: FhirError) -> dict:
    first = {"code": error.code, "diagnostics": error.diagnostics, "expression": error.expression}
    return operation_outcome([first, *error.more])


# --- out: RiskAssessment -------------------------------------------------------------------------


def _subject(prediction: Prediction) -> dict:
    patient = prediction.patient
    out: dict = {"identifier": {"system": PATIENT_SYSTEM, "value": patient.external_id}}
    if FHIR_ID.match(patient.external_id):
        out["reference"] = f"Patient/{patient.external_id}"
    if patient.display_name:
        out["display"] = patient.display_name
    return out


def risk_assessment(prediction: Prediction) -> dict:
    """The prediction as a FHIR RiskAssessment (validated); `basis` points at the source Observations."""
    version = prediction.model_version
    model = version.registered_model
    labels = {f.name: f.label for f in version.features.all()}
    basis = []
    for name, entry in (prediction.features or {}).items():
        reference = ((entry or {}).get("source") or {}).get("reference")
        if reference and (entry or {}).get("value") is not None:
            basis.append({"reference": reference, "display": labels.get(name, name)})
    method = f"{model.name} v{version.version}"
    body: dict = {
        "resourceType": "RiskAssessment",
        "id": str(prediction.pk),
        "identifier": [{"system": "urn:sightline:prediction", "value": prediction.external_id}],
        "status": "final",
        "method": {
            "coding": [
                {"system": MODEL_SYSTEM, "code": f"{model.name}|{version.version}", "display": method}
            ],
            "text": method,
        },
        "subject": _subject(prediction),
        "occurrenceDateTime": iso_utc(prediction.scored_at),
        "prediction": [
            {
                "outcome": {"text": model.outcome},
                "probabilityDecimal": prediction.risk,
                "qualitativeRisk": {
                    "coding": [
                        {"system": RISK_PROBABILITY, "code": QUALITATIVE[prediction.tier]},
                        {"system": TIER_SYSTEM, "code": prediction.tier},
                    ],
                    "text": prediction.tier,
                },
                "whenRange": {
                    "high": {
                        "value": model.horizon_hours,
                        "unit": "h",
                        "system": "http://unitsofmeasure.org",
                        "code": "h",
                    }
                },
            }
        ],
    }
    if prediction.encounter_id:
        body["encounter"] = {
            "identifier": {"system": ENCOUNTER_SYSTEM, "value": prediction.encounter.external_id}
        }
    if basis:
        body["basis"] = basis
    if prediction.simulated:
        body["note"] = [{"text": "Simulated patient (demo data), not a real person."}]
    RiskAssessment.model_validate(body)
    return body
