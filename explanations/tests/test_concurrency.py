"""Two scoring-service requests racing on the same key or the same new patient."""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from explanations.services import ingest, prediction_ingest
from patients.models import Encounter, Patient, Prediction
from sightline.api_errors import ApiError

pytestmark = pytest.mark.django_db(transaction=True)


def race(monkeypatch, payloads: list[dict]) -> list:
    """Ingest the payloads in parallel threads that all pass the replay check before any stores."""
    barrier = threading.Barrier(len(payloads), timeout=30)
    original = ingest.score

    def score_then_wait(items):
        original(items)
        barrier.wait()

    monkeypatch.setattr(ingest, "score", score_then_wait)
    results: list = [None] * len(payloads)

    def run(index: int) -> None:
        try:
            results[index] = prediction_ingest(payload=payloads[index], source="rest")
        except ApiError as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_the_same_body_twice_at_once_stores_one_prediction(monkeypatch, prediction_payload):
    payload = prediction_payload(0)

    results = race(monkeypatch, [payload, payload])

    assert sorted(r.created for r in results) == [False, True]
    assert results[0].prediction.pk == results[1].prediction.pk
    assert Prediction.objects.count() == 1


def test_different_bodies_under_one_key_at_once_is_one_conflict(monkeypatch, prediction_payload):
    other = prediction_payload(0)
    other["patient"]["bed"] = "bed-changed"

    results = race(monkeypatch, [prediction_payload(0), other])

    conflicts = [r for r in results if isinstance(r, ApiError)]
    assert len(conflicts) == 1 and conflicts[0].status_code == 409
    assert Prediction.objects.count() == 1


def test_two_scorings_of_one_new_patient_at_once_share_the_patient(monkeypatch, prediction_payload):
    first = prediction_payload(0)
    second = prediction_payload(0, external_id="second-run/RHC")

    results = race(monkeypatch, [first, second])

    assert [getattr(r, "created", r) for r in results] == [True, True]
    assert Prediction.objects.count() == 2
    assert Patient.objects.count() == 1
    assert Encounter.objects.count() == 1


def test_one_new_encounter_for_two_new_patients_at_once_is_one_conflict(monkeypatch, prediction_payload):
    first = prediction_payload(0, encounter_id="enc-raced")
    second = prediction_payload(1, encounter_id="enc-raced")

    results = race(monkeypatch, [first, second])

    conflicts = [r for r in results if isinstance(r, ApiError)]
    assert len(conflicts) == 1 and conflicts[0].code == "encounter_conflict"
    winner = next(r for r in results if not isinstance(r, ApiError))
    # Nothing of the losing request is stored, not even its new patient.
    assert Prediction.objects.count() == 1
    assert list(Patient.objects.values_list("pk", flat=True)) == [winner.prediction.patient_id]
    assert Encounter.objects.get().patient_id == winner.prediction.patient_id


def test_two_posts_of_different_bodies_at_once_are_201_and_409_never_503(
    monkeypatch, prediction_payload, service_token
):
    """Through the API, each thread on its own database connection (issue 15)."""
    barrier = threading.Barrier(2, timeout=30)
    original = ingest.score

    def score_then_wait(items):
        original(items)
        barrier.wait()

    monkeypatch.setattr(ingest, "score", score_then_wait)
    other = prediction_payload(0)
    other["patient"]["bed"] = "bed-changed"
    answers: list = [None, None]

    def run(index: int, payload: dict) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {service_token}")
        try:
            answers[index] = client.post("/api/v1/predictions/", payload, format="json")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(i, p)) for i, p in enumerate([prediction_payload(0), other])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(a.status_code for a in answers) == [201, 409]
    conflict = next(a for a in answers if a.status_code == 409).json()
    assert conflict["error"] == "idempotency_conflict" and "external_id" in conflict["fields"]
    assert Prediction.objects.count() == 1
