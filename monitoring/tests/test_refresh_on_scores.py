"""Scores arriving refresh their version's default monitoring summaries (debounced), so the
dashboard's first view after an ingest reads the cache instead of computing on the request."""

import time

import pytest
from django.core.cache import cache

from monitoring import services
from tests.fixtures.worker import worker_log

pytestmark = pytest.mark.worker

DEADLINE = 90


def test_a_bulk_ingest_refreshes_the_default_summaries_once_and_the_first_view_reads_them(
    celery_worker_process, model_version, service_client, prediction_payload, charlie_client, settings
):
    settings.MONITORING_REFRESH_DEBOUNCE_SECONDS = 3
    cache.clear()
    payloads = [
        prediction_payload(i % prediction_payload.count, external_id=f"refresh-{i}") for i in range(30)
    ]
    first = service_client.post("/api/v1/predictions/bulk/", payloads[:15], format="json")
    second = service_client.post("/api/v1/predictions/bulk/", payloads[15:], format="json")
    assert first.status_code == second.status_code == 200
    # The two posts of the burst share one scheduled refresh.
    assert cache.get(f"{services.CACHE_PREFIX}:refresh-scheduled:{model_version.pk}") == 1

    (overall, *_rest) = services.default_comparisons(version_ids=[model_version.pk])
    deadline = time.monotonic() + DEADLINE
    subgroups_key = f"{overall.cache_key}:subgroups"
    while services.summary_cached(overall) is None or cache.get(subgroups_key) is None:
        assert time.monotonic() < deadline, worker_log(celery_worker_process)
        assert celery_worker_process.poll() is None, worker_log(celery_worker_process)
        time.sleep(0.25)

    response = charlie_client.get("/monitoring/data/summary/", {"version": model_version.pk})

    assert response.status_code == 200, response.content[:300]
    assert cache.get(f"{overall.cache_key}:queued") is None  # the view computed and queued nothing
    assert response.json()["n_current"] == 30 and response.json()["status"] == "ready"

    # The page's subgroup panel: computed by the same refresh, read without queueing.
    response = charlie_client.get("/monitoring/data/subgroups/", {"version": model_version.pk})
    assert response.status_code == 200, response.content[:300]
    assert cache.get(f"{subgroups_key}:queued") is None
    assert response.json()["status"] == "ready"
    assert response.json()["comparison"] == overall.as_json()
