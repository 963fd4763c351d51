"""CDS Hooks 2.0 discovery: one ``patient-view`` service per model with a production version.

The service id is the registered model's name (a slug). Prefetch asks the EHR for what scoring needs
when Sightline has no current score: the Patient, the Encounter (the unit), and the Observations
whose LOINC codes the production version's feature schema names (interop.fhir_bundle maps them back).
"""

from __future__ import annotations

from dataclasses import dataclass

from models_registry.models import ModelVersion
from models_registry.selectors import production_versions, version_lookup

from .fhir_resources import LOINC

HOOK = "patient-view"
LOINC_PREFIX = "LOINC:"


@dataclass(frozen=True)
class CdsService:
    id: str
    version: ModelVersion


def production_services() -> list[CdsService]:
    return [CdsService(id=v.registered_model.name, version=v) for v in production_versions()]


def service_get(service_id: str) -> CdsService | None:
    version = version_lookup(name=service_id)
    return CdsService(id=service_id, version=version) if version is not None else None


def loinc_codes(version: ModelVersion) -> list[str]:
    """The LOINC codes of the version's decision-time inputs, in input order."""
    codes = []
    for code in (
        version.features.filter(decision_time=True).order_by("position").values_list("code", flat=True)
    ):
        if code and code.upper().startswith(LOINC_PREFIX):
            codes.append(code[len(LOINC_PREFIX) :])
    return codes


def prefetch_templates(version: ModelVersion) -> dict[str, str]:
    templates = {
        "patient": "Patient/{{context.patientId}}",
        "encounter": "Encounter/{{context.encounterId}}",
    }
    codes = loinc_codes(version)
    if codes:
        joined = ",".join(f"{LOINC}|{code}" for code in codes)
        templates["observations"] = f"Observation?patient={{{{context.patientId}}}}&code={joined}&_sort=-date"
    return templates


def service_description(service: CdsService) -> dict:
    version = service.version
    model = version.registered_model
    outcome = version.spec.get("outcome") or model.outcome
    return {
        "id": service.id,
        "hook": HOOK,
        "title": f"Sightline: {model.name} risk",
        "description": (
            f"The explained risk of {outcome} from {model.name} v{version.version}, with its calibrated "
            "range, largest factors and data-quality flags; opens the alert in Sightline."
        ),
        "prefetch": prefetch_templates(version),
        "usageRequirements": (
            "Calls must carry a JWT signed by an EHR registered with Sightline (register_ehr); the "
            "userId must be mapped to a Sightline user for cards and feedback."
        ),
    }


def discovery() -> dict:
    return {"services": [service_description(s) for s in production_services()]}
