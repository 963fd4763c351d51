"""FHIR Bundle ingest maps the patient's demographics for subgroup monitoring (issue 18): sex from
Patient.gender, the birth date from a complete Patient.birthDate, race and ethnicity from the US Core
extensions (their OMB category codes, else their text)."""

from datetime import date

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from interop.tests.test_fhir import _patient, _post
from patients.models import Patient, Prediction

CDC = "urn:oid:2.16.840.1.113883.6.238"


def _us_core(kind: str, codes: list[str], text: str) -> dict:
    parts = [{"url": "ombCategory", "valueCoding": {"system": CDC, "code": c}} for c in codes]
    return {
        "url": f"http://hl7.org/fhir/us/core/StructureDefinition/us-core-{kind}",
        "extension": [*parts, {"url": "text", "valueString": text}],
    }


def test_patient_demographics_come_from_gender_birth_date_and_us_core(service_client, fhir_bundle):
    body = fhir_bundle()
    patient = _patient(body)
    patient.update(gender="female", birthDate="1950-03-05")
    patient["extension"] = [
        _us_core("race", ["2106-3", "2054-5"], "White and Black"),
        _us_core("ethnicity", [], "Not Hispanic or Latino"),
    ]

    response = _post(service_client, body)

    assert response.status_code == 200, response.content
    stored = Patient.objects.get(external_id="FHIR-P-001")
    assert (stored.sex, stored.birth_date) == ("female", date(1950, 3, 5))
    assert stored.race == "2106-3|2054-5"  # the OMB codes, when the extension has them
    assert stored.ethnicity == "Not Hispanic or Latino"  # else its text


def test_a_partial_birth_date_is_no_birth_date(service_client, fhir_bundle):
    body = fhir_bundle()
    _patient(body).update(gender="unknown", birthDate="1950-03")
    assert _post(service_client, body).status_code == 200
    stored = Patient.objects.get(external_id="FHIR-P-001")
    assert (stored.sex, stored.birth_date, stored.race) == ("unknown", None, "")


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"gender": "F"}, "gender", "gender 'F' is not an administrative-gender code"),
        ({"birthDate": "2999-01-01"}, "birthDate", "birthDate 2999-01-01 is in the future"),
    ],
)
def test_bad_patient_demographics_are_an_operation_outcome(service_client, fhir_bundle, change, field, words):
    body = fhir_bundle()
    _patient(body).update(change)
    response = _post(service_client, body)
    assert response.status_code == 400
    issue = OperationOutcome.model_validate(response.json()).issue[0]
    assert words in issue.diagnostics and issue.expression == [f"Bundle.entry[0].resource.{field}"]
    assert Prediction.objects.count() == 0
