"""Scoring a CDS Hooks prefetch: the Patient, Encounter and Observations the EHR sent, turned into the
transaction Bundle ``POST /fhir/`` takes and scored and explained through the very same pipeline
(interop.fhir_bundle -> explanations.services.prediction_ingest).

The Patient is matched by its resource id (CONTRACT.md section 8), so its identifiers are not used as
the patient id here; of several Observations with one LOINC code the newest is the model's input.
The Bundle's identifier is the hookInstance, so a repeated call is the same prediction (idempotent).
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from common.timestamps import iso_utc
from explanations.services import prediction_ingest
from models_registry.models import ModelVersion
from patients.models import Prediction
from sightline.api_errors import ApiError

from . import fhir_bundle
from .cds_service import CdsError, HookRequest, invalid
from .fhir_resources import LOINC, FhirError

PREFETCH_MISSING = "prefetch_missing"


def _resource(prefetch: dict, key: str, kind: str) -> dict | None:
    value = prefetch.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("resourceType") != kind:
        raise invalid(f"prefetch.{key}", f"Must be a FHIR {kind} resource.")
    return value


def _observations(prefetch: dict) -> list[dict]:
    """The newest Observation per LOINC code from a searchset Bundle (or a list of Observations)."""
    value = prefetch.get("observations")
    if value is None:
        return []
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        entries = [e.get("resource") for e in value.get("entry") or [] if isinstance(e, dict)]
    else:
        raise invalid("prefetch.observations", "Must be a FHIR Bundle of Observations.")
    newest: dict[str, dict] = {}
    for obs in entries:
        if not isinstance(obs, dict) or obs.get("resourceType") != "Observation":
            continue
        codes = [
            c.get("code") for c in (obs.get("code") or {}).get("coding") or [] if c.get("system") == LOINC
        ]
        if not codes or not codes[0]:
            continue
        when = str(obs.get("effectiveDateTime") or obs.get("effectiveInstant") or "")
        held = newest.get(codes[0])
        if held is None or when > str(held.get("effectiveDateTime") or held.get("effectiveInstant") or ""):
            newest[codes[0]] = obs
    return list(newest.values())


def prefetch_bundle(hook: HookRequest) -> dict[str, Any] | None:
    """The transaction Bundle of the prefetch, or None when it lacks what scoring needs."""
    patient = _resource(hook.prefetch, "patient", "Patient")
    encounter = _resource(hook.prefetch, "encounter", "Encounter")
    observations = _observations(hook.prefetch)
    if patient is None or encounter is None or not observations:
        return None
    if patient.get("id") not in (None, hook.patient_id):
        raise invalid("prefetch.patient.id", f"Is not context.patientId ({hook.patient_id}).")
    patient = {k: v for k, v in patient.items() if k != "identifier"} | {"id": hook.patient_id}
    entries = [{"resource": patient, "request": {"method": "PUT", "url": f"Patient/{hook.patient_id}"}}]
    entries.append({"resource": encounter, "request": {"method": "PUT", "url": "Encounter"}})
    entries += [{"resource": obs, "request": {"method": "PUT", "url": "Observation"}} for obs in observations]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "identifier": {"system": "urn:sightline:cds-hook-instance", "value": f"cds-{hook.hook_instance}"},
        "timestamp": iso_utc(timezone.now()),
        "entry": entries,
    }


def prefetch_score(hook: HookRequest, *, version: ModelVersion) -> Prediction | None:
    """Score and explain the prefetch (None when it cannot be scored: nothing is stored)."""
    bundle = prefetch_bundle(hook)
    if bundle is None:
        return None
    try:
        parsed = fhir_bundle.bundle_parse(bundle)
        mapped = fhir_bundle.bundle_to_payload(
            parsed, version=version, body_sha256=fhir_bundle.body_sha256(bundle), received_at=timezone.now()
        )
        result = prediction_ingest(payload=mapped.payload, source=Prediction.Source.FHIR)
    except FhirError as exc:
        raise CdsError(
            400, "invalid", f"prefetch: {exc.diagnostics}", {"prefetch": [exc.diagnostics]}
        ) from None
    except ApiError as exc:
        fields = {f"prefetch.{k}": v for k, v in exc.fields.items()} or {"prefetch": [str(exc.detail)]}
        raise CdsError(exc.status_code, exc.code, f"prefetch: {exc.detail}", fields) from None
    return result.prediction
