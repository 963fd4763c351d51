"""A prediction posted through the API is explained by a real Celery worker process.

The worker is a separate process on the test database (committed data: transactional_db),
the same Redis, the test's model store, and a queue of its own so no other worker takes
the task.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from explanations.core import ADDITIVITY_TOLERANCE
from explanations.models import Explanation

pytestmark = pytest.mark.worker

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60


def _database_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker_queue(redis_url):
    """A queue of this test's own, used by this process when it enqueues."""
    from sightline.celery import app

    queue = f"sightline-test-{uuid.uuid4().hex[:10]}"
    previous = app.conf.task_always_eager, app.conf.task_default_queue
    app.conf.task_always_eager, app.conf.task_default_queue = False, queue
    yield queue
    app.conf.task_always_eager, app.conf.task_default_queue = previous
    import redis

    redis.Redis.from_url(redis_url).delete(
        queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"
    )


@pytest.fixture
def celery_worker_process(transactional_db, postgres, model_store, worker_queue, redis_url, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "CELERY_QUEUE": worker_queue,
        "MODEL_STORE": str(model_store),
        "DB_CONN_MAX_AGE": "0",
    }
    log_path = tmp_path / "worker.log"
    celery = Path(sys.executable).with_name("celery")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(celery),
                "-A",
                "sightline",
                "worker",
                "--pool=prefork",
                "-c",
                "1",
                "-Q",
                worker_queue,
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    process.log_path = log_path
    yield process
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _wait_for_explanation(prediction_id: int, process) -> Explanation:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        explanation = Explanation.objects.get(prediction_id=prediction_id)
        if explanation.status in (Explanation.Status.READY, Explanation.Status.FAILED):
            return explanation
        if process.poll() is not None:
            pytest.fail(f"the worker exited ({process.returncode}):\n{process.log_path.read_text()[-4000:]}")
        time.sleep(0.2)
    pytest.fail(
        f"no explanation after {READY_TIMEOUT} s; worker log:\n{process.log_path.read_text()[-4000:]}"
    )


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
