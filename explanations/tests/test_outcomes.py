"""POST /api/v1/outcomes/ (CONTRACT.md section 3)."""

import pytest

from patients.models import Outcome

URL = "/api/v1/outcomes/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def encounter_id(service_client, prediction_payload) -> str:
    payload = prediction_payload(0)
    assert service_client.post("/api/v1/predictions/", payload, format="json").status_code == 201
    return payload["encounter_id"]


def test_outcome_is_recorded_once_and_replays_answer_200(service_client, encounter_id):
    body = {"encounter_id": encounter_id, "outcome": True, "occurred_at": "2026-01-20T03:00:00+01:00"}

    first = service_client.post(URL, body, format="json")
    again = service_client.post(URL, body, format="json")

    assert first.status_code == 201, first.content
    assert first.json()["occurred_at"] == "2026-01-20T02:00:00Z"
    assert first.json()["outcome"] is True
    assert again.status_code == 200
    outcome = Outcome.objects.get()
    assert (outcome.encounter.external_id, outcome.outcome) == (encounter_id, True)


def test_a_different_outcome_for_the_same_encounter_is_409(service_client, encounter_id):
    service_client.post(URL, {"encounter_id": encounter_id, "outcome": True}, format="json")

    response = service_client.post(URL, {"encounter_id": encounter_id, "outcome": False}, format="json")

    assert response.status_code == 409
    assert response.json()["error"] == "outcome_conflict"
    assert "encounter_id" in response.json()["fields"]
    assert Outcome.objects.get().outcome is True


def test_unknown_encounter_is_404_naming_it(service_client, db):
    response = service_client.post(URL, {"encounter_id": "E-404", "outcome": True}, format="json")

    assert response.status_code == 404
    assert response.json()["error"] == "unknown_encounter"
    assert "encounter_id" in response.json()["fields"]
    assert Outcome.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"outcome": True}, "encounter_id"),
        ({"encounter_id": "E-1"}, "outcome"),
        ({"encounter_id": "E-1", "outcome": "perhaps"}, "outcome"),
        ({"encounter_id": "E-1", "outcome": True, "occurred_at": "2026-01-20 03:00"}, "occurred_at"),
    ],
)
def test_invalid_outcome_is_400_naming_the_field(service_client, db, body, field):
    response = service_client.post(URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert Outcome.objects.count() == 0


def test_outcomes_need_a_service_token(alice_client, client, encounter_id):
    body = {"encounter_id": encounter_id, "outcome": True}
    assert client.post(URL, body, content_type="application/json").status_code == 401
    assert alice_client.post(URL, body, content_type="application/json").status_code == 403
    assert Outcome.objects.count() == 0
