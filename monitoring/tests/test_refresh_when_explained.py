"""The last batch of a backlog refreshes the version's summaries once more (debounced), so their
attribution drift counts every explanation, not only those ready when the scores' refresh ran."""

import pytest
from django.core.cache import cache

from explanations.tasks import explanation_compute_batch_task
from monitoring import services
from patients.models import Prediction
from sightline.celery import app

pytestmark = pytest.mark.usefixtures("fresh_cache")


def _queued(queue: str) -> int:
    with app.connection_or_acquire() as connection:
        return connection.default_channel.queue_declare(queue=queue, passive=True).message_count


def test_only_the_batch_that_empties_the_backlog_schedules_a_refresh(
    worker_queue, model_version, service_client, prediction_payload, django_capture_on_commit_callbacks
):
    payloads = [prediction_payload(i, external_id=f"explained-{i}") for i in range(6)]
    response = service_client.post("/api/v1/predictions/bulk/", payloads, format="json")
    assert response.status_code == 200  # pending: the after-commit enqueue does not run in a test
    ids = list(
        Prediction.objects.filter(pk__in=[r["id"] for r in response.json()["results"]])
        .order_by("pk")
        .values_list("explanation__pk", flat=True)
    )
    scheduled = f"{services.CACHE_PREFIX}:refresh-scheduled:{model_version.pk}"

    with django_capture_on_commit_callbacks(execute=True):
        assert explanation_compute_batch_task.run(ids[:4]) == ["ready"] * 4
    assert cache.get(scheduled) is None  # two are still pending

    with django_capture_on_commit_callbacks(execute=True):
        assert explanation_compute_batch_task.run(ids[4:]) == ["ready"] * 2
    assert cache.get(scheduled) == 1
    assert _queued(worker_queue) == 1  # the refresh, which a worker runs after the debounce


def test_a_lone_explanation_that_empties_the_backlog_schedules_a_refresh_too(
    worker_queue, model_version, service_client, prediction_payload, django_capture_on_commit_callbacks
):
    """Review finding: only a batch announced what it stored, so a backlog whose last explanation
    was a lone post's never refreshed the summaries until the periodic refresh (10 minutes)."""
    from explanations.tasks import explanation_compute_task

    response = service_client.post("/api/v1/predictions/", prediction_payload(0), format="json")
    assert response.status_code == 201
    explanation_id = Prediction.objects.get(pk=response.json()["id"]).explanation.pk
    scheduled = f"{services.CACHE_PREFIX}:refresh-scheduled:{model_version.pk}"

    with django_capture_on_commit_callbacks(execute=True):
        assert explanation_compute_task.run(explanation_id) == "ready"
    assert cache.get(scheduled) == 1
