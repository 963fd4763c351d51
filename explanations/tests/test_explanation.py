"""The explanation: computed by the Celery task, shown by GET /api/v1/predictions/{id}/explanation/."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from engine.treeshap import ADDITIVITY_TOLERANCE, explain
from explanations import services
from explanations.models import Explanation
from explanations.tasks import explanation_compute_task, explanation_sweep
from models_registry.services import artifact_store_path
from models_registry.serving import serving_cache_clear, serving_model
from patients.models import AuditEvent, Prediction

pytestmark = pytest.mark.django_db


def ingest(service_client, payload) -> Prediction:
    response = service_client.post("/api/v1/predictions/", payload, format="json")
    assert response.status_code == 201, response.content
    return Prediction.objects.get(pk=response.json()["id"])


def explanation_url(prediction: Prediction) -> str:
    return f"/api/v1/predictions/{prediction.pk}/explanation/"


def test_explanation_is_computed_after_commit_and_adds_up_to_the_margin(
    service_client, prediction_payload, model_version, django_capture_on_commit_callbacks
):
    payload = prediction_payload(0)
    payload["features"]["urine_output_24h"] = None

    with django_capture_on_commit_callbacks(execute=True):
        prediction = ingest(service_client, payload)

    explanation = Explanation.objects.get(prediction=prediction)
    assert explanation.status == Explanation.Status.READY
    assert explanation.attempts == 1
    total = explanation.base_value + sum(c["shap"] for c in explanation.contributions)
    assert total == pytest.approx(prediction.margin, abs=ADDITIVITY_TOLERANCE)
    assert explanation.additivity_error <= ADDITIVITY_TOLERANCE
    # SHAP against the whole documented background, not shap's default 100-row sample.
    assert explanation.background_size == model_version.background_size == 200
    assert [c["name"] for c in explanation.contributions] == [f.name for f in model_version.input_features()]


def test_explanation_api_shows_every_input_with_value_unit_source_and_shap(
    service_client,
    prediction_payload,
    model_version,
    charlie,
    charlie_client,
    django_capture_on_commit_callbacks,
):
    payload = prediction_payload(0)
    payload["features"]["albumin"] = None
    with django_capture_on_commit_callbacks(execute=True):
        prediction = ingest(service_client, payload)

    response = charlie_client.get(explanation_url(prediction))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert body["model"] == {"name": "icu-mortality-30d", "version": model_version.version}
    assert body["background"] == {"size": 200, "description": model_version.background_description}
    names = [f["name"] for f in body["features"]]
    assert names == [f.name for f in model_version.input_features()]
    assert "rhc_day1" not in names
    by_name = {f["name"]: f for f in body["features"]}
    albumin = by_name["albumin"]
    assert (albumin["value"], albumin["measured"], albumin["unit"]) == (None, False, "g/dL")
    map_ = by_name["map"]
    assert map_["value"] == payload["features"]["map"]["value"]
    assert map_["label"] == model_version.features.get(name="map").label
    assert map_["unit"] == "mmHg"
    assert map_["observed_at"] == payload["features"]["map"]["observed_at"]
    assert map_["source"] == payload["features"]["map"]["source"]
    total = body["base_value"] + sum(f["shap"] for f in body["features"])
    assert total == pytest.approx(body["margin"], abs=ADDITIVITY_TOLERANCE)
    assert body["additivity_error"] <= ADDITIVITY_TOLERANCE
    assert body["not_yet_computed"] == []
    assert body["uncertainty"]["interval"]["low"] <= body["risk"] + 0.15
    assert body["similar_patients"]["k"] == 10
    assert body["stability"]["perturbations"] == 20
    assert (
        AuditEvent.objects.filter(user=charlie, prediction=prediction, action="api_explanation").count() == 1
    )


def test_pending_explanation_shows_values_but_no_numbers(service_client, prediction_payload, charlie_client):
    prediction = ingest(service_client, prediction_payload(0))

    body = charlie_client.get(explanation_url(prediction)).json()

    assert body["status"] == "pending"
    assert body["not_yet_computed"] == ["uncertainty", "similar_patients", "stability"]
    assert body["uncertainty"] is None and body["similar_patients"] is None and body["stability"] is None
    assert body["base_value"] is None
    assert all(f["shap"] is None for f in body["features"])
    assert any(f["value"] is not None for f in body["features"])


def test_explanation_access_follows_the_patients_unit(
    service_client, prediction_payload, alice_client, bob_client, auditor_client, client
):
    payload = prediction_payload(0)
    payload["patient"]["unit"] = "MICU"
    prediction = ingest(service_client, payload)
    url = explanation_url(prediction)

    assert alice_client.get(url).status_code == 200  # clinician of MICU
    assert bob_client.get(url).status_code == 404  # CCU: its existence is not disclosed
    assert bob_client.get(url).json()["error"] == "not_found"
    assert auditor_client.get(url).status_code == 200
    assert client.get(url).status_code in (401, 403)
    assert service_client.get(url).status_code == 403  # a scoring token sees no patient
    # Alice's and the auditor's views; bob's two refusals are recorded as refused, never as seen.
    events = AuditEvent.objects.filter(prediction=prediction)
    assert sorted(events.values_list("action", flat=True)) == ["api_explanation"] * 2 + ["refused"] * 2


def test_tampered_artifact_fails_the_explanation_with_its_reason(
    service_client, prediction_payload, model_version, charlie_client
):
    prediction = ingest(service_client, prediction_payload(0))
    model_file = artifact_store_path(model_version.artifacts["model.json"])
    model_file.write_bytes(model_file.read_bytes() + b" ")  # still valid JSON; another sha256
    serving_cache_clear()

    assert explanation_compute_task.delay(prediction.explanation.pk).get() == "failed"

    explanation = Explanation.objects.get(prediction=prediction)
    assert explanation.status == Explanation.Status.FAILED
    assert "sha256" in explanation.error
    assert explanation.base_value is None and explanation.contributions is None
    body = charlie_client.get(explanation_url(prediction)).json()
    assert body["status"] == "failed"
    assert "sha256" in body["error"]
    assert all(f["shap"] is None for f in body["features"])


def test_additivity_failure_is_stored_as_failed_not_as_numbers(service_client, prediction_payload):
    prediction = ingest(service_client, prediction_payload(0))
    # A margin the model does not give for these values: the SHAP values cannot add up to it.
    Prediction.objects.filter(pk=prediction.pk).update(margin=prediction.margin + 0.5)

    explanation = services.explanation_compute(explanation_id=prediction.explanation.pk)

    assert explanation.status == Explanation.Status.FAILED
    assert "do not add up" in explanation.error
    assert explanation.contributions is None


def test_an_explanation_is_computed_once(service_client, prediction_payload):
    prediction = ingest(service_client, prediction_payload(0))
    first = services.explanation_compute(explanation_id=prediction.explanation.pk)
    finished = first.finished_at

    second = services.explanation_compute(explanation_id=prediction.explanation.pk)

    assert second.status == Explanation.Status.READY
    assert second.attempts == 1
    assert second.finished_at == finished


def test_stored_shap_matches_the_core_on_the_same_row(service_client, prediction_payload, model_version):
    prediction = ingest(service_client, prediction_payload(5))
    explanation = services.explanation_compute(explanation_id=prediction.explanation.pk)
    serving = serving_model(model_version)
    row = serving.encode(prediction.features)

    expected = explain(serving.explainer, row)

    assert np.allclose([c["shap"] for c in explanation.contributions], expected.values[0], atol=1e-9)


def test_sweep_requeues_stuck_explanations_only(service_client, prediction_payload, settings):
    settings.EXPLANATION_STUCK_SECONDS = 300
    old = timezone.now() - timedelta(seconds=600)
    stuck_running, stuck_pending, fresh = (ingest(service_client, prediction_payload(i)) for i in range(3))
    Explanation.objects.filter(prediction=stuck_running).update(status="running", started_at=old, attempts=1)
    Explanation.objects.filter(prediction=stuck_pending).update(queued_at=old)

    assert explanation_sweep.delay().get() == 2

    statuses = dict(Explanation.objects.values_list("prediction_id", "status"))
    assert statuses == {stuck_running.pk: "ready", stuck_pending.pk: "ready", fresh.pk: "pending"}


def test_sweep_gives_up_after_repeated_lost_workers(service_client, prediction_payload, settings):
    prediction = ingest(service_client, prediction_payload(0))
    old = timezone.now() - timedelta(seconds=settings.EXPLANATION_STUCK_SECONDS + 60)
    Explanation.objects.filter(prediction=prediction).update(
        status="running", started_at=old, attempts=services.MAX_ATTEMPTS
    )

    assert services.explanations_stuck_requeue() == []

    explanation = Explanation.objects.get(prediction=prediction)
    assert explanation.status == "failed"
    assert "Gave up" in explanation.error


def test_broker_down_still_stores_and_acknowledges(
    service_client, prediction_payload, django_capture_on_commit_callbacks, caplog
):
    from sightline.celery import app

    def reset_pools():
        # Celery caches the broker connection pools; drop them so the new URL is used.
        app._pool = None
        app.amqp._producer_pool = None

    app.conf.task_always_eager = False
    previous = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    reset_pools()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = service_client.post("/api/v1/predictions/", prediction_payload(0), format="json")
    finally:
        app.conf.broker_url = previous
        reset_pools()

    assert response.status_code == 201, response.content
    assert Explanation.objects.get(prediction_id=response.json()["id"]).status == "pending"
    assert "broker unreachable, 1 explanation(s) left pending for the sweep" in caplog.text
