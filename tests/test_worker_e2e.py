"""A prediction posted through the API is explained by a real Celery worker process.

The worker is a separate process on the test database (committed data: transactional_db),
the same Redis, the test's model store, and a queue of its own so no other worker takes
the task.
"""

import time

import pytest

from engine.treeshap import ADDITIVITY_TOLERANCE
from explanations.models import Explanation
from tests.fixtures.worker import start_worker, stop_worker, worker_log

pytestmark = pytest.mark.worker

READY_TIMEOUT = 60


def _wait_for_explanation(prediction_id: int, process) -> Explanation:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        explanation = Explanation.objects.get(prediction_id=prediction_id)
        if explanation.status in (Explanation.Status.READY, Explanation.Status.FAILED):
            return explanation
        if process.poll() is not None:
            pytest.fail(f"the worker exited ({process.returncode}):\n{worker_log(process)}")
        time.sleep(0.2)
    pytest.fail(f"no explanation after {READY_TIMEOUT} s; worker log:\n{worker_log(process)}")


def test_worker_explains_a_posted_prediction(
    celery_worker_process, model_version, service_client, prediction_payload, charlie_client
):
    posted = time.monotonic()
    response = service_client.post("/api/v1/predictions/", prediction_payload(0), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["explanation"]["status"] == "pending"

    explanation = _wait_for_explanation(response.json()["id"], celery_worker_process)
    waited = time.monotonic() - posted

    assert explanation.status == Explanation.Status.READY, explanation.error
    assert explanation.attempts == 1
    body = charlie_client.get(response.json()["explanation"]["url"]).json()
    assert body["status"] == "ready"
    total = body["base_value"] + sum(f["shap"] for f in body["features"])
    assert total == pytest.approx(body["margin"], abs=ADDITIVITY_TOLERANCE)
    assert body["background"]["size"] == model_version.background_size
    compute = (explanation.finished_at - explanation.started_at).total_seconds()
    print(f"\nworker: explanation computed in {compute * 1000:.0f} ms; post-to-ready {waited:.1f} s")


def test_a_lone_prediction_is_explained_before_a_backlog_of_batches(
    transactional_db,
    postgres,
    model_store,
    worker_queue,
    redis_url,
    tmp_path,
    model_version,
    service_client,
    prediction_payload,
):
    """Three bulk messages wait in the queue, then a lone prediction is posted: the worker (one
    process) reads the lone prediction's queue first, so it is explained before any of the backlog."""
    payloads = [
        prediction_payload(i % prediction_payload.count, external_id=f"backlog-{i}") for i in range(600)
    ]
    response = service_client.post("/api/v1/predictions/bulk/", payloads, format="json")
    assert response.status_code == 200, response.content[:300]
    backlog = [r["id"] for r in response.json()["results"]]
    response = service_client.post("/api/v1/predictions/", prediction_payload(0), format="json")
    assert response.status_code == 201, response.content
    lone = response.json()["id"]

    process = start_worker(
        queue=worker_queue, redis_url=redis_url, model_store=model_store, log_path=tmp_path / "worker.log"
    )
    try:
        first = _wait_for_explanation(lone, process)
        deadline = time.monotonic() + READY_TIMEOUT
        while Explanation.objects.filter(
            prediction_id__in=backlog, status__in=["pending", "running"]
        ).exists():
            assert time.monotonic() < deadline, worker_log(process)
            time.sleep(0.2)
    finally:
        stop_worker(process)

    assert first.status == Explanation.Status.READY, first.error
    others = Explanation.objects.filter(prediction_id__in=backlog)
    assert set(others.values_list("status", flat=True)) == {Explanation.Status.READY}
    assert first.finished_at <= min(others.values_list("started_at", flat=True))
