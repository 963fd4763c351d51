"""POST /api/v1/predictions/bulk/: a JSON list or NDJSON, answered per item."""

import json

import pytest

from explanations.models import Explanation
from explanations.tests.helpers import stored_counts
from patients.models import Alert, Patient, Prediction

URL = "/api/v1/predictions/bulk/"

pytestmark = pytest.mark.django_db


def test_mixed_items_keep_the_good_ones_and_answer_each(service_client, prediction_payload):
    bad_range = prediction_payload(1)
    bad_range["features"]["heart_rate"]["value"] = 999
    leaking = prediction_payload(2)
    leaking["features"]["rhc_day1"] = {"value": False}
    items = [prediction_payload(0), bad_range, leaking, prediction_payload(3), {"external_id": "x"}]

    response = service_client.post(URL, items, format="json")

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in results] == [201, 400, 422, 201, 400]
    assert results[1]["fields"] == {
        "features.heart_rate.value": results[1]["fields"]["features.heart_rate.value"]
    }
    assert results[2]["error"] == "leakage"
    assert "model" in results[4]["fields"]
    stored = set(Prediction.objects.values_list("external_id", flat=True))
    assert stored == {items[0]["external_id"], items[3]["external_id"]}
    assert {results[0]["id"], results[3]["id"]} == set(Prediction.objects.values_list("pk", flat=True))
    assert Prediction.objects.get(pk=results[0]["id"]).source == "bulk"
    assert stored_counts()["explanations"] == 2


def test_bulk_scores_like_the_single_endpoint(service_client, prediction_payload):
    items = [prediction_payload(i) for i in range(10)]
    bulk = service_client.post(URL, items, format="json").json()["results"]

    for index, item in enumerate(items):
        single = service_client.post("/api/v1/predictions/", item, format="json")
        assert single.status_code == 200  # the same body: a replay of the bulk item
        assert single.json()["risk"] == bulk[index]["risk"]
        assert single.json()["tier"] == bulk[index]["tier"]


def test_replaying_a_bulk_body_creates_nothing_twice(service_client, prediction_payload):
    items = [prediction_payload(i) for i in range(5)]
    first = service_client.post(URL, items, format="json").json()["results"]
    changed = prediction_payload(4)
    changed["patient"]["bed"] = "bed-changed"
    items[4] = changed

    again = service_client.post(URL, items, format="json").json()["results"]

    assert [r["status"] for r in first] == [201] * 5
    assert [r["status"] for r in again] == [200, 200, 200, 200, 409]
    assert [r["id"] for r in again[:4]] == [r["id"] for r in first[:4]]
    assert stored_counts()["predictions"] == 5
    assert stored_counts()["explanations"] == 5


def test_the_same_key_twice_in_one_request(service_client, prediction_payload):
    items = [prediction_payload(0), prediction_payload(0)]
    conflicting = prediction_payload(0)
    conflicting["patient"]["bed"] = "bed-changed"
    items.append(conflicting)

    results = service_client.post(URL, items, format="json").json()["results"]

    assert [r["status"] for r in results] == [201, 200, 409]
    assert results[0]["id"] == results[1]["id"]
    assert Prediction.objects.count() == 1


def test_ndjson_body(service_token, prediction_payload, client):
    items = [prediction_payload(0), prediction_payload(1)]
    body = "\n".join(json.dumps(i) for i in items) + "\n"

    response = client.post(
        URL, body, content_type="application/x-ndjson", HTTP_AUTHORIZATION=f"Token {service_token}"
    )

    assert response.status_code == 200, response.content
    assert [r["status"] for r in response.json()["results"]] == [201, 201]


def test_ndjson_with_a_broken_line_is_400_naming_the_line(service_token, prediction_payload, client):
    body = json.dumps(prediction_payload(0)) + "\n{not json\n"

    response = client.post(
        URL, body, content_type="application/x-ndjson", HTTP_AUTHORIZATION=f"Token {service_token}"
    )

    assert response.status_code == 400
    assert "Line 2" in response.json()["detail"]
    assert Prediction.objects.count() == 0


def test_more_items_than_the_limit_is_413(service_client, prediction_payload, settings):
    settings.BULK_MAX_ITEMS = 3

    response = service_client.post(URL, [prediction_payload(i) for i in range(4)], format="json")

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert Prediction.objects.count() == 0


def test_body_that_is_not_a_list_is_400(service_client, prediction_payload):
    response = service_client.post(URL, prediction_payload(0), format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"body": ["Expected a list."]}


def test_bulk_needs_a_service_token(alice_client, prediction_payload, client):
    assert client.post(URL, [prediction_payload(0)], content_type="application/json").status_code == 401
    assert alice_client.post(URL, [prediction_payload(0)], content_type="application/json").status_code == 403


def test_explanations_are_queued_after_commit(
    service_client, prediction_payload, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        results = service_client.post(URL, [prediction_payload(i) for i in range(3)], format="json")
    assert len(callbacks) == 1  # one enqueue for the whole request

    with django_capture_on_commit_callbacks(execute=True):  # and what the batch it queued commits
        callbacks[0]()
    statuses = Explanation.objects.filter(prediction_id__in=[r["id"] for r in results.json()["results"]])
    assert set(statuses.values_list("status", flat=True)) == {"ready"}


def test_a_new_encounter_named_by_two_patients_keeps_the_first_and_stores_nothing_of_the_second(
    service_client, prediction_payload
):
    first = prediction_payload(0, encounter_id="enc-shared")
    second = prediction_payload(1, encounter_id="enc-shared")
    ordered = sorted([first, second], key=lambda p: p["patient"]["id"])

    results = service_client.post(URL, [ordered[1], ordered[0]], format="json").json()["results"]

    # Items are stored in patient order: the patient that sorts first keeps the encounter.
    assert [r["status"] for r in results] == [409, 201]
    assert results[0]["error"] == "encounter_conflict"
    assert stored_counts()["predictions"] == 1
    assert set(Patient.objects.values_list("external_id", flat=True)) == {ordered[0]["patient"]["id"]}


def test_a_bulk_request_costs_a_few_queries_whatever_its_size(
    service_client, prediction_payload, django_assert_max_num_queries
):
    items = [prediction_payload(i) for i in range(40)]

    with django_assert_max_num_queries(25):
        response = service_client.post(URL, items, format="json")

    assert [r["status"] for r in response.json()["results"]] == [201] * 40
    assert stored_counts()["predictions"] == 40
    assert Alert.objects.count() == Prediction.objects.filter(tier__in=["medium", "high"]).count() > 0
