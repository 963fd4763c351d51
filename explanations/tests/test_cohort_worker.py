"""A chunked cohort recompute survives a worker killed mid-way: run again, it completes, and every
prediction is counted once (real Celery worker processes on the test database and Redis)."""

import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from django.conf import settings

from demo.simulate import predictions_resampled_create
from engine import cohort
from engine import treeshap as core
from explanations import services
from explanations.models import CohortAggregate, CohortChunkAggregate, CohortJob, CohortJobChunk
from models_registry.serving import serving_model
from patients.models import Prediction
from tests.fixtures import worker

pytestmark = pytest.mark.worker

ROWS, CHUNK = 2400, 200


@pytest.fixture
def start_worker(transactional_db, postgres, model_store, worker_queue, redis_url, tmp_path):
    processes = []

    def start():
        process = worker.start_worker(
            queue=worker_queue,
            redis_url=redis_url,
            model_store=model_store,
            log_path=tmp_path / f"worker-{len(processes)}.log",
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        worker.stop_worker(process)


def _wait(condition, process, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"worker exited:\n{worker.worker_log(process)}")
        time.sleep(0.02)
    pytest.fail(f"timed out; worker log:\n{worker.worker_log(process)}")


def _done(job) -> int:
    return CohortJobChunk.objects.filter(job=job, status=CohortJobChunk.Status.DONE).count()


def test_cohort_job_survives_a_killed_worker(start_worker, model_version):
    predictions_resampled_create(
        version=model_version, n=ROWS, seed=1, run_at=datetime(2026, 1, 5, 8, tzinfo=UTC)
    )
    job = services.cohort_job_create(version=model_version, chunk_size=CHUNK)
    assert job.chunks_total == ROWS // CHUNK

    first = start_worker()
    services.cohort_job_run(job=job)
    _wait(lambda: _done(job) >= 2, first)
    worker.stop_worker(first, kill=True)
    done_when_killed = _done(job)
    job.refresh_from_db()
    assert job.status == CohortJob.Status.RUNNING and done_when_killed < job.chunks_total

    second = start_worker()
    dispatched = services.cohort_job_run(job=job)  # resume: only the chunks not done
    assert dispatched == job.chunks_total - done_when_killed
    _wait(lambda: CohortJob.objects.get(pk=job.pk).status == CohortJob.Status.DONE, second)

    job.refresh_from_db()
    assert _done(job) == job.chunks_total
    # One partial row per (chunk, feature, slice): a chunk run twice replaced its rows.
    partials = pd.DataFrame(
        list(
            CohortChunkAggregate.objects.filter(chunk__job=job).values(
                "chunk", "feature", "unit", "shift", "day"
            )
        )
    )
    assert not partials.duplicated().any()
    names = serving_model(model_version).feature_names
    counted = CohortAggregate.objects.filter(version=model_version, feature=names[0]).values_list(
        "count", flat=True
    )
    assert sum(counted) == ROWS

    # The same numbers as shap run directly on the same rows, aggregated with pandas.
    serving = serving_model(model_version)
    rows = list(Prediction.objects.filter(model_version=model_version).order_by("pk"))
    matrix = np.vstack([serving.encode(p.features) for p in rows])
    shap = core.explain(serving.explainer, matrix).values
    slices = [cohort.slice_of(p.scored_at, settings.HOSPITAL_TIME_ZONE) for p in rows]
    frame = pd.DataFrame(
        {"unit": [p.unit for p in rows], "shift": [s for s, _ in slices], "day": [d for _, d in slices]}
    )
    j = names.index("apache_aps")
    expected = frame.assign(v=shap[:, j]).groupby(["unit", "shift", "day"])["v"].agg(["size", "sum"])
    stored = pd.DataFrame(
        list(
            CohortAggregate.objects.filter(version=model_version, feature="apache_aps").values(
                "unit", "shift", "day", "count", "total"
            )
        )
    ).set_index(["unit", "shift", "day"])
    stored = stored.loc[expected.index]
    assert stored["count"].tolist() == expected["size"].tolist()
    np.testing.assert_allclose(stored["total"], expected["sum"], atol=1e-6)
