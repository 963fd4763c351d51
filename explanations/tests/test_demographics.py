"""Patient demographics on prediction payloads (CONTRACT section 2, issue 18): optional FHIR-coded
sex, birth date or age, race and ethnicity, stored with the patient for subgroup monitoring and
never shown on the worklist."""

from datetime import date

import pytest

from explanations.payloads import prediction_shape_check
from patients.models import Patient, Prediction

URL = "/api/v1/predictions/"
DEMOGRAPHICS = {"sex": "female", "birth_date": "1950-03-05", "race": "2054-5", "ethnicity": "2186-5"}


def _micu(prediction_payload, **patient) -> dict:
    index = next(
        i for i in range(prediction_payload.count) if prediction_payload(i)["patient"]["unit"] == "MICU"
    )
    body = prediction_payload(index)
    for key in ("sex", "birth_date", "age", "race", "ethnicity"):  # the demo sends the RHC study's
        body["patient"].pop(key, None)
    body["patient"].update(patient)
    return body


def test_demographics_are_stored_with_the_patient_and_kept_until_given_again(
    service_client, prediction_payload
):
    body = _micu(prediction_payload, **DEMOGRAPHICS)
    assert service_client.post(URL, body, format="json").status_code == 201
    patient = Patient.objects.get(external_id=body["patient"]["id"])
    assert (patient.sex, patient.birth_date, patient.age) == ("female", date(1950, 3, 5), None)
    assert (patient.race, patient.ethnicity) == ("2054-5", "2186-5")

    later = _micu(prediction_payload)  # none given: kept
    later["external_id"] += "/later"
    assert service_client.post(URL, later, format="json").status_code == 201
    patient.refresh_from_db()
    assert (patient.sex, patient.birth_date, patient.race) == ("female", date(1950, 3, 5), "2054-5")

    aged = _micu(prediction_payload, age=76)
    aged["external_id"] += "/aged"
    assert service_client.post(URL, aged, format="json").status_code == 201
    patient.refresh_from_db()
    assert (patient.age, patient.birth_date) == (76, None)  # an age given later replaces the date


@pytest.mark.parametrize(
    ("patient", "field"),
    [
        ({"sex": "F"}, "patient.sex"),
        ({"birth_date": "1950-13-01"}, "patient.birth_date"),
        ({"birth_date": "05/03/1950"}, "patient.birth_date"),
        ({"birth_date": "2999-01-01"}, "patient.birth_date"),
        ({"age": 131}, "patient.age"),
        ({"age": "76"}, "patient.age"),
        ({"birth_date": "1950-03-05", "age": 76}, "patient.age"),
        ({"race": "x" * 101}, "patient.race"),
    ],
)
def test_a_bad_demographic_is_a_400_naming_it_and_stores_nothing(
    service_client, prediction_payload, patient, field
):
    response = service_client.post(URL, _micu(prediction_payload, **patient), format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert Prediction.objects.count() == 0 and Patient.objects.count() == 0


def test_shape_check_returns_the_birth_date_as_a_date():
    body = {
        "external_id": "r/1",
        "model": "m",
        "patient": {"id": "P", "unit": "MICU", "sex": "unknown", "birth_date": "1950-03-05"},
        "encounter_id": "E",
        "scored_at": "2026-01-05T09:00:00Z",
        "features": {},
    }
    data, errors = prediction_shape_check(body)
    assert errors == {} and data["patient"]["birth_date"] == date(1950, 3, 5)


def test_demographics_never_reach_the_worklist(service_client, prediction_payload, alice_client):
    body = _micu(
        prediction_payload, sex="other", birth_date="1931-07-09", race="Mongolian", ethnicity="2135-2"
    )
    assert service_client.post(URL, body, format="json").status_code == 201
    page = alice_client.get("/").content.decode()
    data = alice_client.get("/worklist.json").content.decode()
    assert body["patient"]["display_name"] in page  # the patient is on the worklist
    for text in (page, data):
        for value in ("Mongolian", "2135-2", "1931-07-09", "1931", ">other<"):
            assert value not in text
