"""FHIR R4 in (CONTRACT.md section 5): a transaction Bundle mapped to a prediction payload.

Resources are validated with the maintained `fhir.resources` library. Its FHIR 4.x models live in
`fhir.resources.R4B` (FHIR 4.3); Bundle, Patient, Encounter, Observation, RiskAssessment and
OperationOutcome have the same structure in R4 (4.0.1) and R4B, so an R4 client reads what we send
and we read what it sends.

A transaction Bundle in is mapped to a CONTRACT section-2 prediction payload:

- Patient (exactly one): `identifier[0].value` (else `id`) is the patient id; `name[0]` the name.
- Encounter (at most one): `identifier[0].value` (else `id`) is the encounter id; the unit is the
  display of its first `location` whose physical type is not a bed ("bd"), the bed the display of
  a location whose physical type is "bd".
- Observation (one per feature): its LOINC coding (system http://loinc.org) names the feature
  through the registered version's feature `code` ("LOINC:2160-0"); an Observation whose code no
  input feature of the version has is rejected (400), as is a second Observation for the same
  feature. The value is valueQuantity (its `unit`, or else its UCUM `code`, must be the feature's
  unit), valueInteger, valueBoolean (binary), valueString or valueCodeableConcept (categorical); an
  Observation with a dataAbsentReason and no value is "not measured". `effectiveDateTime` (or
  effectiveInstant) is observed_at; the Observation's `Observation/<id>` (or its fullUrl) is the
  source reference a RiskAssessment's `basis` points back to.
- Patient demographics (age, sex) have no LOINC code, so they are read from the Patient resource,
  and only for features whose registered `code` asks for it explicitly (a feature without one stays
  "not measured", as the demo schema's `age` and `sex_female` do until their bundle.yaml carries
  these codes):
  - `FHIR:Patient.birthDate` (PATIENT_BIRTH_DATE): a numeric feature, the age in completed years at
    the Encounter's `period.start`, else at the newest Observation `effectiveDateTime`/`Instant`;
    with neither (or no birthDate) it is "not measured". A partial birthDate ("1950", "1950-03") is
    used only when every day it may stand for gives the same age, else "not measured" (nothing is
    guessed). A birthDate after that reference time is rejected (400, `Patient.birthDate`).
  - `FHIR:Patient.gender` (PATIENT_GENDER): a binary feature meaning "female", mapped by
    GENDER_FEMALE: "female" -> true, "male" -> false; "other", "unknown" or no gender is "not
    measured" (a yes/no "female" cannot say them). A code outside FHIR's administrative-gender value
    set is rejected (400, `Patient.gender`).
  The value's source reference is `Patient/<id>` (or the Patient entry's fullUrl).
- Scoring time is the Bundle's `timestamp` (else the time it was received); the external id is
  `fhir/<Bundle.identifier.value>`, else `fhir/` and a hash of the body, so a repeated Bundle is
  idempotent exactly as a repeated prediction is.
- It is scored by the model's production version (`?model=<name>` picks the model when more than
  one has a production version) and explained like any prediction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from models_registry.models import ModelFeature, ModelVersion, RegisteredModel
from models_registry.selectors import production_versions, version_lookup
from patients.models import Prediction

from .fhir_observation import observation_features
from .fhir_patient import patient_demographics, patient_features
from .fhir_resources import (
    MAX_ISSUES,
    PATIENT_BIRTH_DATE,
    PATIENT_GENDER,
    FhirError,
    risk_assessment,
)

# --- in: transaction Bundle ----------------------------------------------------------------------


def _loc_path(loc: tuple) -> str:
    path = "Bundle"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _validation_issues(exc: ValidationError) -> list[dict]:
    issues = []
    for error in exc.errors()[:MAX_ISSUES]:
        message = str(error.get("msg", "invalid"))
        issues.append(
            {
                "code": "required" if error.get("type") == "missing" else "structure",
                "diagnostics": f"{_loc_path(error.get('loc', ()))}: {message}",
                "expression": [_loc_path(error.get("loc", ()))],
            }
        )
    return issues


def bundle_parse(data: Any) -> Bundle:
    """Validate a transaction Bundle with fhir.resources; FhirError names what is wrong."""
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise FhirError(400, "structure", "Expected a FHIR Bundle resource (resourceType 'Bundle').")
    try:
        bundle = Bundle.model_validate(data)
    except ValidationError as exc:
        issues = _validation_issues(exc)
        raise FhirError(
            400, issues[0]["code"], issues[0]["diagnostics"], issues[0]["expression"], more=issues[1:]
        ) from None
    if bundle.type != "transaction":
        raise FhirError(
            400, "value", f"Expected a transaction Bundle; got type '{bundle.type}'.", ["Bundle.type"]
        )
    return bundle


def version_for(model_name: str | None) -> ModelVersion:
    """The production version that scores a posted Bundle."""
    if model_name:
        if not RegisteredModel.objects.filter(name=model_name).exists():
            raise FhirError(400, "not-found", f"No registered model '{model_name}'.")
        found = [version] if (version := version_lookup(name=model_name)) is not None else []
    else:
        found = list(production_versions()[:2])
    if not found:
        raise FhirError(400, "not-found", "No model version is in production to score this Bundle.")
    if len(found) > 1:
        raise FhirError(400, "required", "Several models are in production: name one with ?model=<name>.")
    return found[0]


def _first_identifier(resource, kind: str, index: int) -> str:
    for identifier in resource.identifier or []:
        if identifier.value:
            return identifier.value
    if resource.id:
        return resource.id
    raise FhirError(
        400,
        "required",
        f"The {kind} needs an identifier (or an id).",
        [f"Bundle.entry[{index}].resource.identifier"],
    )


@dataclass
class MappedBundle:
    payload: dict
    entry_count: int
    # Feature name -> the FHIRPath of the Observation it came from (to name it in errors).
    feature_paths: dict[str, str]


def _features_by_source(version: ModelVersion) -> tuple[dict[str, ModelFeature], list[ModelFeature]]:
    """The version's coded decision-time features: by upper-cased code, and those read from the Patient."""
    by_code: dict[str, ModelFeature] = {}
    from_patient: list[ModelFeature] = []
    for spec in version.features.all():
        if not (spec.code and spec.decision_time):
            continue
        if spec.code.upper() in (PATIENT_BIRTH_DATE.upper(), PATIENT_GENDER.upper()):
            from_patient.append(spec)
        else:
            by_code[spec.code.upper()] = spec
    return by_code, from_patient


@dataclass
class _Entries:
    patient: Any
    patient_index: int
    encounter: Any
    encounter_index: int
    # (entry index, entry, Observation) in Bundle order.
    observations: list[tuple[int, Any, Any]]


def _sorted_entries(bundle: Bundle) -> _Entries:
    """The Bundle's one Patient, at most one Encounter and its Observations; anything else is a 400."""
    patient = encounter = None
    patient_index = encounter_index = 0
    observations = []
    for index, entry in enumerate(bundle.entry or []):
        resource = entry.resource
        where = f"Bundle.entry[{index}].resource"
        kind = resource.get_resource_type() if resource is not None else None
        if kind == "Patient":
            if patient is not None:
                raise FhirError(400, "not-supported", "A Bundle carries one Patient.", [where])
            patient, patient_index = resource, index
        elif kind == "Encounter":
            if encounter is not None:
                raise FhirError(400, "not-supported", "A Bundle carries at most one Encounter.", [where])
            encounter, encounter_index = resource, index
        elif kind == "Observation":
            observations.append((index, entry, resource))
        else:
            raise FhirError(
                400,
                "not-supported",
                f"{where}: expected Patient, Encounter or Observation; got {kind or 'no resource'}.",
                [where],
            )
    if patient is None:
        raise FhirError(400, "required", "The Bundle needs a Patient.", ["Bundle.entry"])
    return _Entries(patient, patient_index, encounter, encounter_index, observations)


def _display_name(patient) -> str:
    if not patient.name:
        return ""
    name = patient.name[0]
    return name.text or ", ".join(p for p in [name.family, " ".join(name.given or [])] if p)


def _encounter_place(encounter, encounter_index: int) -> tuple[str, str, str]:
    """(encounter id, unit, bed) of the Bundle's Encounter; the Encounter and its unit are required."""
    if encounter is None:
        # CONTRACT section 2: a score without its encounter could never meet its outcome.
        raise FhirError(
            400, "required", "The Bundle needs an Encounter: every score belongs to one.", ["Bundle.entry"]
        )
    encounter_id = _first_identifier(encounter, "Encounter", encounter_index)
    unit = bed = ""
    for location in encounter.location or []:
        types = [c.code for c in (location.physicalType.coding if location.physicalType else []) or []]
        display = (location.location.display if location.location else None) or ""
        if "bd" in types:
            bed = bed or display
        elif display:
            unit = unit or display
    if not unit:
        raise FhirError(
            400,
            "required",
            "The unit is required: give the Encounter a location whose display is the unit code "
            "(e.g. 'MICU').",
            [f"Bundle.entry[{encounter_index}].resource.location"],
        )
    return encounter_id, unit, bed


def _demographic_features(
    bundle: Bundle, entries: _Entries, from_patient: list[ModelFeature]
) -> tuple[dict[str, dict], str]:
    """(feature name -> item, FHIRPath of the Patient) of the features read from the Patient resource.

    An age is taken at the Encounter's start, else at the newest Observation's effective time.
    """
    newest = None
    for _, _, obs in entries.observations:
        effective = obs.effectiveDateTime or obs.effectiveInstant
        if isinstance(effective, datetime) and (newest is None or effective > newest):
            newest = effective
    encounter = entries.encounter
    start = encounter.period.start if encounter is not None and encounter.period else None
    at = start if isinstance(start, date) else newest
    patient = entries.patient
    patient_entry = (bundle.entry or [])[entries.patient_index]
    source = f"Patient/{patient.id}" if patient.id else (patient_entry.fullUrl or None)
    where = f"Bundle.entry[{entries.patient_index}].resource"
    items = patient_features(patient, from_patient, where=where, at=at, reference=source and str(source))
    return items, where


def bundle_to_payload(
    bundle: Bundle, *, version: ModelVersion, body_sha256: str, received_at: datetime
) -> MappedBundle:
    """The CONTRACT section-2 payload of a validated transaction Bundle (see the module docstring)."""
    by_code, from_patient = _features_by_source(version)
    entries = _sorted_entries(bundle)
    patient, patient_index = entries.patient, entries.patient_index
    patient_id = _first_identifier(patient, "Patient", patient_index)
    encounter_id, unit, bed = _encounter_place(entries.encounter, entries.encounter_index)
    scored_at = bundle.timestamp or received_at
    features, paths = observation_features(entries.observations, by_code, version)
    if from_patient:
        items, where = _demographic_features(bundle, entries, from_patient)
        for name, item in items.items():
            features[name] = item
            paths[name] = where
    key = bundle.identifier.value if bundle.identifier and bundle.identifier.value else body_sha256[:32]
    payload = {
        "external_id": f"fhir/{key}",
        "model": version.registered_model.name,
        "model_version": version.version,
        "patient": {
            "id": patient_id,
            "display_name": _display_name(patient),
            "unit": unit,
            "bed": bed,
            **patient_demographics(patient, where=f"Bundle.entry[{patient_index}].resource"),
        },
        "scored_at": scored_at.isoformat() if hasattr(scored_at, "isoformat") else str(scored_at),
        "features": features,
        "encounter_id": encounter_id,
    }
    return MappedBundle(payload=payload, entry_count=len(bundle.entry or []), feature_paths=paths)


def body_sha256(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def transaction_response(mapped: MappedBundle, prediction: Prediction, created: bool) -> dict:
    """One response per entry posted, in order, then the RiskAssessment the Bundle was scored into."""
    entries: list[dict] = [{"response": {"status": "200 OK"}} for _ in range(mapped.entry_count)]
    entries.append(
        {
            "resource": risk_assessment(prediction),
            "response": {
                "status": "201 Created" if created else "200 OK",
                "location": f"RiskAssessment/{prediction.pk}",
            },
        }
    )
    body = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
    Bundle.model_validate(body)
    return body
