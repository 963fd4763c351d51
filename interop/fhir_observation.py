"""Observations of a FHIR transaction Bundle mapped to payload features by their LOINC code (the
version's feature `code`, e.g. "LOINC:2160-0"), with the value and unit rules of interop.fhir_bundle's
module docstring, which describes the whole mapping."""

from __future__ import annotations

import unicodedata
from decimal import Decimal
from typing import Any

from models_registry.models import ModelFeature, ModelVersion

from .fhir_resources import ACCEPTED_STATUS, LOINC, FhirError

# --- in: transaction Bundle ----------------------------------------------------------------------


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


def _observation_spec(
    obs, by_code: dict[str, ModelFeature], version: ModelVersion, where: str
) -> ModelFeature:
    """The feature a scorable Observation's LOINC coding names; FhirError when status or code is wrong."""
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
    return spec


def _observation_item(obs, entry, spec: ModelFeature, where: str) -> dict:
    """The payload feature item (value, unit, observed_at, source) of one Observation."""
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
    return item


def observation_features(
    observations: list[tuple[int, Any, Any]], by_code: dict[str, ModelFeature], version: ModelVersion
) -> tuple[dict[str, dict], dict[str, str]]:
    """(feature name -> item, feature name -> FHIRPath) of the Observations; one Observation per feature."""
    features: dict[str, dict] = {}
    paths: dict[str, str] = {}
    for index, entry, obs in observations:
        where = f"Bundle.entry[{index}].resource"
        spec = _observation_spec(obs, by_code, version, where)
        if spec.name in features:
            raise FhirError(
                400,
                "business-rule",
                f"{where}: a second Observation for {spec.label}; send the one value the model should use.",
                [f"{where}.code"],
            )
        features[spec.name] = _observation_item(obs, entry, spec, where)
        paths[spec.name] = where
    return features, paths
