"""A prediction posted through the API is explained by a real Celery worker process.

The worker is a separate process on the test database (committed data: transactional_db),
the same Redis, the test's model store, and a queue of its own so no other worker takes
the task.
"""

import time

import pytest

from engine.treeshap import ADDITIVITY_TOLERANCE
from explanations.models import Explanation
from tests.fixtures.worker import worker_log

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
