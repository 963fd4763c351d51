"""Nothing accepted is lost: a worker SIGKILLed mid-task, Redis restarted empty, Redis down at ingest.

Each test runs a real Celery worker (with its embedded beat, so the periodic sweep runs) against
a redis-server of its own, which the test kills and restarts. Every accepted prediction must end
with exactly one ready explanation.
"""

import time

import pytest
from django.db.models import Sum

from explanations.models import CohortAggregate, Explanation
from patients.models import Prediction
from tests.fixtures.worker import point_celery_at, start_worker, stop_worker, worker_log

pytestmark = pytest.mark.worker

# The sweep runs every 2 s and takes back work pending or running for more than 4 s.
SWEEP_ENV = {"EXPLANATION_SWEEP_SECONDS": "2", "EXPLANATION_STUCK_SECONDS": "4"}
DEADLINE = 90


@pytest.fixture
def private_broker(private_redis, worker_queue):
    """This process enqueues to the private Redis; restored afterwards."""
    from sightline.celery import app

    previous = app.conf.broker_url
    point_celery_at(private_redis.url, worker_queue)
    yield private_redis
    point_celery_at(previous)


def post_bulk(service_client, prediction_payload, count: int, prefix: str) -> list[int]:
    payloads = [
        prediction_payload(i % prediction_payload.count, external_id=f"{prefix}-{i}") for i in range(count)
    ]
    response = service_client.post("/api/v1/predictions/bulk/", payloads, format="json")
    assert response.status_code == 200, response.content[:500]
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201] * count
    return [r["id"] for r in results]


def wait_all_ready(prediction_ids: list[int], worker) -> dict[str, int]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        statuses = dict.fromkeys(Explanation.Status.values, 0)
        for status in Explanation.objects.filter(prediction_id__in=prediction_ids).values_list(
            "status", flat=True
        ):
            statuses[status] += 1
        if statuses[Explanation.Status.READY] + statuses[Explanation.Status.FAILED] == len(prediction_ids):
            return statuses
        if worker.poll() is not None:
            pytest.fail(f"the worker exited ({worker.returncode}):\n{worker_log(worker)}")
        time.sleep(0.25)
    pytest.fail(f"not all explained after {DEADLINE} s: {statuses}\n{worker_log(worker)}")


def explained_by_a_sweeping_worker(ids, *, broker, queue, model_store, log_path) -> None:
    """Start a worker with its beat (so the sweep runs), wait until every prediction is explained."""
    worker = start_worker(
        queue=queue,
        redis_url=broker.url,
        model_store=model_store,
        log_path=log_path,
        beat=True,
        env=SWEEP_ENV,
    )
    try:
        wait_all_ready(ids, worker)
    finally:
        stop_worker(worker)
    assert_each_explained_once(ids)


def assert_each_explained_once(prediction_ids: list[int]) -> None:
    explanations = Explanation.objects.filter(prediction_id__in=prediction_ids)
    assert (
        explanations.count()
        == len(prediction_ids)
        == Prediction.objects.filter(pk__in=prediction_ids).count()
    )
    assert set(explanations.values_list("status", flat=True)) == {Explanation.Status.READY}
    assert all(e.contributions for e in explanations)
    # Counted once each in the cohort aggregates (a batch is stored in one transaction, under its claims).
    feature = explanations.first().contributions[0]["name"]
    counted = CohortAggregate.objects.filter(feature=feature).aggregate(n=Sum("count"))["n"]
    assert counted == len(prediction_ids)


def test_worker_killed_mid_task_then_every_prediction_is_explained_once(
    transactional_db,
    postgres,
    model_store,
    model_version,
    service_client,
    prediction_payload,
    private_broker,
    worker_queue,
    tmp_path,
):
    ids = post_bulk(service_client, prediction_payload, 60, "kill")
    worker = start_worker(
        queue=worker_queue,
        redis_url=private_broker.url,
        model_store=model_store,
        log_path=tmp_path / "worker1.log",
        beat=True,
        env=SWEEP_ENV,
    )
    # SIGKILL the whole worker (parent and pool child) while it is inside a task.
    deadline = time.monotonic() + 60
    while not Explanation.objects.filter(prediction_id__in=ids, status=Explanation.Status.RUNNING).exists():
        assert time.monotonic() < deadline, worker_log(worker)
        time.sleep(0.005)
    stop_worker(worker, kill=True)
    interrupted = Explanation.objects.filter(prediction_id__in=ids, status=Explanation.Status.RUNNING).count()
    unfinished = (
        Explanation.objects.filter(prediction_id__in=ids).exclude(status=Explanation.Status.READY).count()
    )
    assert interrupted >= 1 and unfinished >= 1

    explained_by_a_sweeping_worker(
        ids,
        broker=private_broker,
        queue=worker_queue,
        model_store=model_store,
        log_path=tmp_path / "worker2.log",
    )
    # The interrupted explanation was claimed again (attempt 2), never computed twice over.
    assert max(Explanation.objects.filter(prediction_id__in=ids).values_list("attempts", flat=True)) >= 2


def test_redis_restarted_empty_loses_queued_messages_but_the_sweep_recovers_them(
    transactional_db,
    postgres,
    model_store,
    model_version,
    service_client,
    prediction_payload,
    private_broker,
    worker_queue,
    tmp_path,
):
    # Accepted while no worker runs: the messages wait in Redis...
    ids = post_bulk(service_client, prediction_payload, 40, "restart")
    # ...and Redis restarts without persistence: every queued message is gone.
    private_broker.stop()
    private_broker.start()
    point_celery_at(private_broker.url, worker_queue)
    import redis

    assert redis.Redis.from_url(private_broker.url).llen(worker_queue) == 0
    explained_by_a_sweeping_worker(
        ids,
        broker=private_broker,
        queue=worker_queue,
        model_store=model_store,
        log_path=tmp_path / "worker.log",
    )


def test_redis_down_at_ingest_still_stores_and_acknowledges_then_explains(
    transactional_db,
    postgres,
    model_store,
    model_version,
    service_client,
    prediction_payload,
    private_broker,
    worker_queue,
    tmp_path,
):
    private_broker.stop()
    response = service_client.post(
        "/api/v1/predictions/", prediction_payload(0, external_id="redis-down-0"), format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["explanation"]["status"] == "pending"
    ids = [response.json()["id"]]

    private_broker.start()
    point_celery_at(private_broker.url, worker_queue)
    explained_by_a_sweeping_worker(
        ids,
        broker=private_broker,
        queue=worker_queue,
        model_store=model_store,
        log_path=tmp_path / "worker.log",
    )
