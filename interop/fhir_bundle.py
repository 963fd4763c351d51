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
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from models_registry.models import ModelFeature, ModelVersion, RegisteredModel
from patients.models import Prediction

from .fhir_patient import patient_demographics, patient_features
from .fhir_resources import (
    ACCEPTED_STATUS,
    LOINC,
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
    versions = ModelVersion.objects.filter(status=ModelVersion.Status.PRODUCTION).select_related(
        "registered_model"
    )
    if model_name:
        if not RegisteredModel.objects.filter(name=model_name).exists():
            raise FhirError(400, "not-found", f"No registered model '{model_name}'.")
        versions = versions.filter(registered_model__name=model_name)
    found = list(versions[:2])
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


def _same_unit(posted: str, schema: str) -> bool:
    return unicodedata.normalize("NFKC", posted.strip()) == unicodedata.normalize("NFKC", schema)


def _number(value: Decimal | int | float) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() and isinstance(value, int) else number


def _observation_value(obs, spec: ModelFeature, where: str) -> tuple[Any, str | None]:
    """(value, unit) of an Observation for its feature; FhirError when the value type or unit is wrong."""
    if obs.valueQuantity is not None:
        quantity = obs.valueQuantity
        if quantity.value is None:
            raise FhirError(
                400, "required", f"{where}: valueQuantity has no value.", [f"{where}.valueQuantity"]
            )
        posted_units = [u for u in (quantity.unit, quantity.code) if u]
        if spec.unit and not any(_same_unit(u, spec.unit) for u in posted_units):
            got = " / ".join(posted_units) or "no unit"
            raise FhirError(
                400,
                "value",
                f"{where}: {spec.label} must be in '{spec.unit}'; got {got}.",
                [f"{where}.valueQuantity.unit"],
            )
        return _number(quantity.value), spec.unit or None
    if obs.valueInteger is not None:
        return int(obs.valueInteger), None
    if obs.valueBoolean is not None:
        return bool(obs.valueBoolean), None
    if obs.valueString is not None:
        return obs.valueString, None
    if obs.valueCodeableConcept is not None:
        concept = obs.valueCodeableConcept
        codes = [c.code for c in concept.coding or [] if c.code]
        return (codes[0] if codes else concept.text), None
    if obs.dataAbsentReason is not None:
        return None, None
    raise FhirError(
        400,
        "required",
        f"{where}: an Observation needs a value[x] (or a dataAbsentReason when not measured).",
        [f"{where}.value[x]"],
    )


@dataclass
class MappedBundle:
    payload: dict
    entry_count: int
    # Feature name -> the FHIRPath of the Observation it came from (to name it in errors).
    feature_paths: dict[str, str]


def bundle_to_payload(
    bundle: Bundle, *, version: ModelVersion, body_sha256: str, received_at: datetime
) -> MappedBundle:
    """The CONTRACT section-2 payload of a validated transaction Bundle (see the module docstring)."""
    by_code: dict[str, ModelFeature] = {}
    from_patient: list[ModelFeature] = []
    for spec in version.features.all():
        if not (spec.code and spec.decision_time):
            continue
        if spec.code.upper() in (PATIENT_BIRTH_DATE.upper(), PATIENT_GENDER.upper()):
            from_patient.append(spec)
        else:
            by_code[spec.code.upper()] = spec
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
    patient_id = _first_identifier(patient, "Patient", patient_index)
    display_name = ""
    if patient.name:
        name = patient.name[0]
        display_name = name.text or ", ".join(p for p in [name.family, " ".join(name.given or [])] if p)
    unit = bed = ""
    if encounter is None:
        # CONTRACT section 2: a score without its encounter could never meet its outcome.
        raise FhirError(
            400, "required", "The Bundle needs an Encounter: every score belongs to one.", ["Bundle.entry"]
        )
    encounter_id = _first_identifier(encounter, "Encounter", encounter_index)
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
            [
                f"Bundle.entry[{encounter_index}].resource.location"
                if encounter is not None
                else "Bundle.entry"
            ],
        )
    scored_at = bundle.timestamp or received_at
    features: dict[str, dict] = {}
    paths: dict[str, str] = {}
    for index, entry, obs in observations:
        where = f"Bundle.entry[{index}].resource"
        if obs.status not in ACCEPTED_STATUS:
            raise FhirError(
                400,
                "value",
                f"{where}: Observation status '{obs.status}' cannot be scored.",
                [f"{where}.status"],
            )
        codings = [c for c in (obs.code.coding or []) if c.system == LOINC and c.code]
        spec = next(
            (by_code.get(f"LOINC:{c.code}".upper()) for c in codings if f"LOINC:{c.code}".upper() in by_code),
            None,
        )
        if spec is None:
            shown = ", ".join(f"{c.system}|{c.code}" for c in obs.code.coding or []) or "no coding"
            raise FhirError(
                400,
                "code-invalid",
                f"{where}: {shown} is not an input of {version}: Observations are matched to features by "
                "their LOINC code.",
                [f"{where}.code"],
            )
        if spec.name in features:
            raise FhirError(
                400,
                "business-rule",
                f"{where}: a second Observation for {spec.label}; send the one value the model should use.",
                [f"{where}.code"],
            )
        value, unit_text = _observation_value(obs, spec, where)
        item: dict = {"value": value}
        if unit_text:
            item["unit"] = unit_text
        effective = obs.effectiveDateTime or obs.effectiveInstant
        if effective is not None:
            item["observed_at"] = effective.isoformat() if hasattr(effective, "isoformat") else str(effective)
        reference = f"Observation/{obs.id}" if obs.id else (entry.fullUrl or None)
        if reference:
            item["source"] = {"system": spec.source or "FHIR", "reference": str(reference)}
        features[spec.name] = item
        paths[spec.name] = where
    if from_patient:
        newest = None
        for _, _, obs in observations:
            effective = obs.effectiveDateTime or obs.effectiveInstant
            if isinstance(effective, datetime) and (newest is None or effective > newest):
                newest = effective
        start = encounter.period.start if encounter is not None and encounter.period else None
        at = start if isinstance(start, date) else newest
        patient_entry = (bundle.entry or [])[patient_index]
        source = f"Patient/{patient.id}" if patient.id else (patient_entry.fullUrl or None)
        where = f"Bundle.entry[{patient_index}].resource"
        for name, item in patient_features(
            patient, from_patient, where=where, at=at, reference=source and str(source)
        ).items():
            features[name] = item
            paths[name] = where
    key = bundle.identifier.value if bundle.identifier and bundle.identifier.value else body_sha256[:32]
    payload = {
        "external_id": f"fhir/{key}",
        "model": version.registered_model.name,
        "model_version": version.version,
        "patient": {
            "id": patient_id,
            "display_name": display_name,
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
