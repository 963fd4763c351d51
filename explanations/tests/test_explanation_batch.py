"""Explaining many predictions at once: one engine call, one transaction, each claimed and stored once."""

import numpy as np
import pytest
from django.db.models import Sum

from explanations import services
from explanations.models import CohortAggregate, Explanation
from explanations.services.explanation_batch import BURST_MIN_PENDING
from explanations.services.explanations import engine_compute_many, explanation_store
from explanations.services.profiles import version_profile_loaded
from explanations.tasks import explanation_compute_batch_task, explanation_compute_task
from models_registry.serving import serving_model
from patients.models import Prediction

pytestmark = pytest.mark.django_db


def _ingest_pending(service_client, prediction_payload, count: int, prefix: str) -> list[Prediction]:
    """Posted but not yet explained (the after-commit enqueue does not run in a test transaction)."""
    payloads = [
        prediction_payload(i % prediction_payload.count, external_id=f"{prefix}-{i}") for i in range(count)
    ]
    response = service_client.post("/api/v1/predictions/bulk/", payloads, format="json")
    assert response.status_code == 200, response.content[:300]
    ids = [r["id"] for r in response.json()["results"]]
    predictions = list(Prediction.objects.filter(pk__in=ids).order_by("pk"))
    assert {p.explanation.status for p in predictions} == {Explanation.Status.PENDING}
    return predictions


def _explanation_ids(predictions) -> list[int]:
    return [p.explanation.pk for p in predictions]


def test_a_batch_equals_explaining_each_alone_and_a_poisoned_prediction_fails_alone(
    service_client, prediction_payload, model_version
):
    predictions = _ingest_pending(service_client, prediction_payload, 8, "batch")
    poisoned = predictions[3]
    Prediction.objects.filter(pk=poisoned.pk).update(margin=poisoned.margin + 1.0)  # a corrupted score

    assert services.explanations_compute_batch(_explanation_ids(predictions)) == []

    statuses = dict(
        Explanation.objects.filter(prediction__in=predictions).values_list("prediction_id", "status")
    )
    assert statuses.pop(poisoned.pk) == Explanation.Status.FAILED
    assert set(statuses.values()) == {Explanation.Status.READY}
    failed = Explanation.objects.get(prediction=poisoned)
    assert "do not add up to the model output" in failed.error and failed.contributions is None
    serving, profile = serving_model(model_version), version_profile_loaded(model_version)
    for prediction in predictions[:3] + predictions[4:]:
        stored = Explanation.objects.get(prediction=prediction)
        alone = engine_compute_many([Prediction.objects.get(pk=prediction.pk)], serving, profile)[0]
        assert stored.base_value == pytest.approx(alone["base_value"], abs=1e-12)
        np.testing.assert_allclose([c["shap"] for c in stored.contributions], alone["shap"], atol=1e-12)
        assert stored.stability == alone["stability"]
        assert stored.uncertainty["interval"] == alone["uncertainty"]["interval"]
        assert stored.attempts == 1
    # Each ready explanation is counted once in its cohort aggregates.
    first_feature = serving.feature_names[0]
    counted = CohortAggregate.objects.filter(version=model_version, feature=first_feature).aggregate(
        n=Sum("count")
    )
    assert counted["n"] == 7


def test_a_prediction_the_batch_cannot_encode_is_explained_alone_and_fails_with_its_reason(
    service_client, prediction_payload, model_version
):
    predictions = _ingest_pending(service_client, prediction_payload, 6, "encode")
    poisoned = predictions[2]
    categorical = next(f for f in model_version.input_features() if f.kind == "categorical")
    features = {**poisoned.features, categorical.name: {"value": "no-such-category"}}
    Prediction.objects.filter(pk=poisoned.pk).update(features=features)

    statuses = explanation_compute_batch_task.run(_explanation_ids(predictions))

    assert statuses == ["ready", "ready", "failed", "ready", "ready", "ready"]
    failed = Explanation.objects.get(prediction=poisoned)
    assert categorical.name in failed.error and failed.attempts == 2  # the batch's claim, then its own


def test_a_batch_claims_each_explanation_once(service_client, prediction_payload, model_version):
    predictions = _ingest_pending(service_client, prediction_payload, 4, "once")
    ids = _explanation_ids(predictions)
    services.explanations_compute_batch(ids)
    before = list(
        Explanation.objects.filter(pk__in=ids).order_by("pk").values_list("status", "attempts", "finished_at")
    )

    assert services.explanations_compute_batch(ids) == []  # a second copy of the message

    after = list(
        Explanation.objects.filter(pk__in=ids).order_by("pk").values_list("status", "attempts", "finished_at")
    )
    assert after == before and {s for s, _, _ in after} == {"ready"}


def test_a_stale_claim_stores_nothing(service_client, prediction_payload, model_version):
    """A worker the sweep took the row from (same row, newer attempt) cannot store over it."""
    (prediction,) = _ingest_pending(service_client, prediction_payload, 1, "stale")
    explanation = prediction.explanation
    Explanation.objects.filter(pk=explanation.pk).update(status="running", attempts=2)
    explanation.status, explanation.attempts = "running", 1  # what the first, slower worker holds
    result = engine_compute_many(
        [prediction], serving_model(model_version), version_profile_loaded(model_version)
    )[0]

    assert explanation_store(explanation, serving_model(model_version).feature_names, result) is False
    assert Explanation.objects.get(pk=explanation.pk).status == "running"
    assert not CohortAggregate.objects.filter(version=model_version).exists()


def _post_singly(service_client, prediction_payload, count: int, prefix: str) -> list[Prediction]:
    """Posted one by one, not yet explained; each one's own message is then put in the lone queue."""
    ids = []
    for i in range(count):
        payload = prediction_payload(i % prediction_payload.count, external_id=f"{prefix}-{i}")
        response = service_client.post("/api/v1/predictions/", payload, format="json")
        assert response.status_code == 201, response.content[:300]
        ids.append(response.json()["id"])
    predictions = list(Prediction.objects.filter(pk__in=ids).order_by("pk"))
    for prediction in predictions:
        explanation_compute_task.apply_async((prediction.explanation.pk,))  # routed to the lone queue
    return predictions


def test_a_lone_prediction_is_explained_alone_and_a_burst_of_single_posts_is_taken_as_a_batch(
    service_client, prediction_payload, model_version, worker_queue
):
    (lone,) = _post_singly(service_client, prediction_payload, 1, "lone")
    assert explanation_compute_task.run(lone.explanation.pk) == "ready"  # one message waits: its own
    assert Explanation.objects.filter(status="pending").count() == 0

    bulk = _ingest_pending(service_client, prediction_payload, 3, "bulk")  # their batch message comes
    burst = _post_singly(service_client, prediction_payload, BURST_MIN_PENDING, "burst")
    first = burst[0].explanation.pk
    assert services.explanations_backlog(first, waiting=BURST_MIN_PENDING - 2) == [first]
    assert sorted(services.explanations_backlog(first, waiting=BURST_MIN_PENDING - 1)) == sorted(
        _explanation_ids(burst)
    )

    # The messages waiting in Redis make the first one take the whole burst, and no bulk prediction.
    assert explanation_compute_task.run(first) == "ready"
    statuses = Explanation.objects.values_list("status", flat=True)
    assert set(statuses.filter(prediction__in=burst)) == {"ready"}
    assert set(statuses.filter(prediction__in=bulk)) == {"pending"}
    assert explanation_compute_task.run(burst[-1].explanation.pk) == "ready"  # its own message: done
    assert set(Explanation.objects.filter(prediction__in=burst).values_list("attempts", flat=True)) == {1}


def _nothing_measured(payload: dict) -> dict:
    payload = {**payload, "features": {name: {**v, "value": None} for name, v in payload["features"].items()}}
    payload.pop("risk", None)  # the registered model scores it
    return payload


def test_a_prediction_with_nothing_measured_abstains_and_never_fails_its_batch(
    service_client, prediction_payload, model_version
):
    """Review finding: a patient with no input in common with the reference patients had an infinite
    out-of-distribution distance, which the JSON column refused: the whole batch rolled back, was
    retried by the sweep and ended FAILED. Now such a patient abstains (never validated on patients
    like this) and every other explanation of the batch is stored."""
    payloads = [prediction_payload(i, external_id=f"empty-{i}") for i in range(6)]
    payloads[4] = _nothing_measured(payloads[4])
    response = service_client.post("/api/v1/predictions/bulk/", payloads, format="json")
    assert response.status_code == 200, response.content[:300]
    ids = [r["id"] for r in response.json()["results"]]
    explanations = [Prediction.objects.get(pk=i).explanation for i in ids]

    assert explanation_compute_batch_task.run([e.pk for e in explanations]) == ["ready"] * 6

    empty = Explanation.objects.get(pk=explanations[4].pk)
    assert empty.abstain and empty.uncertainty["ood"] == {
        **empty.uncertainty["ood"],
        "distance": None,
        "flag": True,
    }
    assert "shares too few measured inputs with the reference patients" in empty.abstain_reason
    assert Explanation.objects.filter(pk__in=[e.pk for e in explanations], attempts=1).count() == 6

    lone = service_client.post(
        "/api/v1/predictions/",
        _nothing_measured(prediction_payload(7, external_id="empty-lone")),
        format="json",
    )
    assert lone.status_code == 201, lone.content[:300]
    explanation = Prediction.objects.get(pk=lone.json()["id"]).explanation
    assert explanation_compute_task.run(explanation.pk) == "ready"
    explanation.refresh_from_db()
    assert explanation.abstain and explanation.uncertainty["ood"]["distance"] is None


def test_a_batch_the_database_refuses_is_explained_one_by_one(
    service_client, prediction_payload, model_version, monkeypatch
):
    """A result the database refuses (not a transient error) stores nothing of the batch: the batch
    is handed back and each is explained alone, so only a refused one can fail."""
    from django.db import DataError

    from explanations.services import explanation_batch

    predictions = _ingest_pending(service_client, prediction_payload, 4, "refused")

    def refuse(*args, **kwargs):
        raise DataError("invalid input syntax for type json")

    monkeypatch.setattr(explanation_batch, "explanations_store", refuse)
    ids = _explanation_ids(predictions)
    assert services.explanations_compute_batch(ids) == ids
    assert set(Explanation.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        Explanation.Status.PENDING
    }
    monkeypatch.undo()
    assert [explanation_compute_task.run(i) for i in ids] == ["ready"] * 4
