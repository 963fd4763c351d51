"""Patient demographics from a FHIR Patient resource: for features whose registered code asks for
them (FHIR:Patient.birthDate -> age in completed years, FHIR:Patient.gender -> female yes/no), and
for subgroup monitoring (the payload's patient.sex, birth_date, race and ethnicity, CONTRACT
section 2); see interop.fhir_bundle for the whole mapping."""

from __future__ import annotations

import calendar
from datetime import date, datetime
from typing import Any

from models_registry.models import ModelFeature

from .fhir_resources import (
    GENDER_FEMALE,
    PATIENT_BIRTH_DATE,
    PATIENT_GENDER,
    FhirError,
)

# --- in: transaction Bundle ----------------------------------------------------------------------


def _age_years(born: date, at: date) -> int:
    return at.year - born.year - ((at.month, at.day) < (born.month, born.day))


def _birth_bounds(raw: Any) -> tuple[date, date]:
    """The earliest and latest day a (possibly partial) FHIR date may stand for."""
    if isinstance(raw, date):
        return raw, raw
    parts = [int(p) for p in str(raw).split("-")]
    if len(parts) == 1:
        return date(parts[0], 1, 1), date(parts[0], 12, 31)
    year, month = parts[0], parts[1]
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def patient_features(
    patient, specs: list[ModelFeature], *, where: str, at: date | None, reference: str | None
) -> dict[str, dict]:
    """Features coded PATIENT_BIRTH_DATE / PATIENT_GENDER, read from the Patient (see the docstring)."""
    out: dict[str, dict] = {}
    for spec in specs:
        code = spec.code.upper()
        value: Any = None
        if code == PATIENT_BIRTH_DATE.upper() and patient.birthDate is not None and at is not None:
            earliest, latest = _birth_bounds(patient.birthDate)
            on = at.date() if isinstance(at, datetime) else at
            if earliest > on:
                raise FhirError(
                    400,
                    "invariant",
                    f"{where}: birthDate {patient.birthDate} is after {on.isoformat()}, the start of the "
                    f"encounter (or the newest observation) the age is computed at.",
                    [f"{where}.birthDate"],
                )
            oldest, youngest = _age_years(earliest, on), _age_years(latest, on) if latest <= on else 0
            value = oldest if oldest == youngest else None
        elif code == PATIENT_GENDER.upper() and patient.gender is not None:
            if patient.gender not in GENDER_FEMALE:
                allowed = ", ".join(GENDER_FEMALE)
                raise FhirError(
                    400,
                    "code-invalid",
                    f"{where}: gender '{patient.gender}' is not an administrative-gender code ({allowed}).",
                    [f"{where}.gender"],
                )
            value = GENDER_FEMALE[patient.gender]
        item: dict = {"value": value}
        if value is not None and reference:
            item["source"] = {"system": spec.source or "FHIR", "reference": reference}
        out[spec.name] = item
    return out


# --- demographics for subgroup monitoring ---------------------------------------------------------

US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"


def _us_core_category(patient, url: str) -> str | None:
    """A US Core race or ethnicity extension as one value: its OMB category codes (CDC Race and
    Ethnicity, e.g. 2106-3; several joined with "|"), else its required `text`."""
    for extension in patient.extension or []:
        if extension.url != url:
            continue
        parts = extension.extension or []
        codes = [
            p.valueCoding.code
            for p in parts
            if p.url == "ombCategory" and p.valueCoding and p.valueCoding.code
        ]
        if codes:
            return "|".join(codes)[:100]
        text = next((p.valueString for p in parts if p.url == "text" and p.valueString), None)
        return text.strip()[:100] if text and text.strip() else None
    return None


def patient_demographics(patient, *, where: str) -> dict:
    """patient.sex, birth_date, race and ethnicity of the payload, for those the Patient gives: sex
    is Patient.gender (administrative-gender), birth_date a complete Patient.birthDate (a partial
    one, "1950" or "1950-03", is not a date), race and ethnicity the US Core extensions."""
    out: dict = {}
    if patient.gender is not None:
        if patient.gender not in GENDER_FEMALE:
            raise FhirError(
                400,
                "code-invalid",
                f"{where}: gender '{patient.gender}' is not an administrative-gender code "
                f"({', '.join(GENDER_FEMALE)}).",
                [f"{where}.gender"],
            )
        out["sex"] = patient.gender
    if isinstance(patient.birthDate, date):
        if patient.birthDate > date.today():
            raise FhirError(
                400,
                "invariant",
                f"{where}: birthDate {patient.birthDate} is in the future.",
                [f"{where}.birthDate"],
            )
        out["birth_date"] = patient.birthDate.isoformat()
    race, ethnicity = _us_core_category(patient, US_CORE_RACE), _us_core_category(patient, US_CORE_ETHNICITY)
    if race:
        out["race"] = race
    if ethnicity:
        out["ethnicity"] = ethnicity
    return out
