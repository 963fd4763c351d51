"""The steps of bench/explain.py (the entry point, whose docstring says what is measured): each part
of the benchmark (the Celery worker it starts is bench/_worker.py, the /proc figures bench/_proc.py).
Django is imported inside the steps, after bench/explain.py has pointed it at the benchmark's
database."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench._proc import _usage
from bench._stack import recreate_database
from bench._worker import Worker

# A poll of the job this much later than planned: the process group was stopped (or starved).
PAUSE_SECONDS = 10.0
# A long job prints its progress this often; synthetic predictions are stored in parts of this size.
PROGRESS_SECONDS = 600.0
SEED_PART = 100_000


def _load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


def _stages_text(job) -> str:
    """Seconds per stage summed over the job's chunks, each stage's share, and its microseconds per row
    (of one worker process: the job's processes run side by side)."""
    from explanations.models import CohortJobChunk

    totals: dict[str, float] = {}
    for stages in CohortJobChunk.objects.filter(job=job).values_list("stage_seconds", flat=True):
        for stage, seconds in (stages or {}).items():
            totals[stage] = totals.get(stage, 0.0) + seconds
    whole = sum(totals.values()) or 1.0
    rows = max(job.rows_total, 1)
    return ", ".join(
        f"{stage} {seconds:.2f} s ({seconds / whole:.0%}, {seconds * 1e6 / rows:.0f} us/row)"
        for stage, seconds in totals.items()
    )


def django_start(*, database_url: str, redis_url: str) -> str:
    """Point Django at the benchmark's (recreated, migrated) database and Redis; the Celery queue."""
    store = Path(tempfile.mkdtemp(prefix="sightline-bench-store-"))
    queue = f"sightline-bench-{uuid.uuid4().hex[:8]}"
    os.environ.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        MODEL_STORE=str(store),
        CELERY_QUEUE=queue,
        DJANGO_SETTINGS_MODULE="sightline.settings",
        LOG_LEVEL="WARNING",
    )
    base, name = database_url.rsplit("/", 1)
    recreate_database(name, admin_url=f"{base}/postgres")  # each run on an empty database
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return queue


def demo_version_register() -> tuple:
    """(version, serving model) of the demo bundle trained into a temporary directory, registered and
    promoted, with its profile built."""
    from demo.training import train_demo_bundle
    from explanations.services import version_profile_build
    from models_registry.services import model_register
    from models_registry.serving import serving_model

    bundle = Path(tempfile.mkdtemp(prefix="sightline-bench-bundle-")) / "icu-mortality-30d"
    started = time.perf_counter()
    result = train_demo_bundle(bundle)
    version, _ = model_register(path=bundle, promote=True)
    serving = serving_model(version)
    print(
        f"demo bundle: {result.n_trees} trees, background {version.background_size} rows, reference "
        f"{version.reference_size} rows ({time.perf_counter() - started:.0f} s to train and register)"
    )
    started = time.perf_counter()
    profile = version_profile_build(version=version)
    print(
        f"version profile: {time.perf_counter() - started:.1f} s; conformal 90% coverage on the held-out "
        f"half of the reference set: {profile.params['conformal']['coverage_check_half']:.3f}"
    )
    # Registration queued the version's subgroup bootstrap (minutes of CPU) and its profile (built
    # above): left queued, the first worker would run them beside the measured work.
    from sightline.celery import app

    print(f"   tasks queued by registration, dropped: {app.control.purge()}")
    return version, serving


def explanation_latency(version, *, n: int, run_key: str) -> tuple[list[float], list[float]]:
    """(POST to stored ms, worker compute ms) of `n` predictions posted one by one (5 warm-up first)."""
    from rest_framework.test import APIClient

    from accounts.auth import service_token_create
    from demo.rhc import scoring_payloads
    from explanations.models import Explanation

    _, key = service_token_create(name=f"bench-{uuid.uuid4().hex[:6]}")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    payloads = list(scoring_payloads(model_name=version.registered_model.name, limit=n + 5))
    latencies, computes = [], []
    for i, payload in enumerate(payloads):
        payload["external_id"] = f"bench-{run_key}-{i}"
        posted = time.perf_counter()
        response = client.post("/api/v1/predictions/", payload, format="json")
        assert response.status_code == 201, response.content
        prediction_id = response.json()["id"]
        while True:
            explanation = Explanation.objects.get(prediction_id=prediction_id)
            if explanation.status in (Explanation.Status.READY, Explanation.Status.FAILED):
                break
            time.sleep(0.002)
        waited = time.perf_counter() - posted
        assert explanation.status == Explanation.Status.READY, explanation.error
        if i >= 5:  # the first ones load the model and profile into the worker
            latencies.append(waited * 1000)
            computes.append((explanation.finished_at - explanation.started_at).total_seconds() * 1000)
    return latencies, computes


def what_if_latency(*, run_key: str) -> list[float]:
    """ms of 30 what-ifs by an admin on one of the predictions posted for the latency run."""
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from accounts.models import Profile
    from patients.models import Prediction

    admin = get_user_model().objects.create_user(username=f"bench-{run_key}", password=uuid.uuid4().hex)
    Profile.objects.create(user=admin, role=Profile.Role.ADMIN)
    person = APIClient()
    person.force_authenticate(admin)
    target = Prediction.objects.filter(external_id__startswith=f"bench-{run_key}").first()
    timings = []
    for value in [40, 50, 60, 70, 80, 90, 100, 110, 120, 130] * 3:
        t = time.perf_counter()
        response = person.post(
            f"/api/v1/predictions/{target.pk}/what-if/", {"changes": {"map": value}}, format="json"
        )
        assert response.status_code == 200, response.content
        timings.append((time.perf_counter() - t) * 1000)
    return timings


def latency_runs(version, worker: Worker, *, n: int, run_key: str) -> None:
    """Parts 1, 2 and 4 (after the latency runs), with a worker of their own."""
    worker.start()
    latencies, computes = explanation_latency(version, n=n, run_key=run_key)
    worker.sample_rss()
    c50, c95 = _percentile(computes, 50), _percentile(computes, 95)
    print(
        f"1. explanation latency, POST to stored (n={len(latencies)}): "
        f"p50 {_percentile(latencies, 50):.0f} ms, p95 {_percentile(latencies, 95):.0f} ms; "
        f"worker compute p50 {c50:.0f} ms, p95 {c95:.0f} ms"
    )
    timings = what_if_latency(run_key=run_key)
    w50, w95 = _percentile(timings, 50), _percentile(timings, 95)
    print(f"2. what-if latency (n={len(timings)}): p50 {w50:.0f} ms, p95 {w95:.0f} ms")
    worker.sample_rss()
    print(f"4. worker peak RSS after the latency runs: {worker.rss_text()}")
    worker.stop()


def predictions_seed(version, *, created: int, size: int, run_key: str) -> int:
    """Store synthetic predictions until there are `size` (in parts, so a long run shows its progress)."""
    from demo.simulate import predictions_resampled_create

    started = time.perf_counter()
    while created < size:
        part = min(SEED_PART, size - created)
        created += predictions_resampled_create(
            version=version,
            n=part,
            seed=int(time.time()),
            run_at=datetime.now(UTC),
            prefix=f"bench-{run_key}-{created}",
        )
        if created < size:
            print(f"   ... {created:,} predictions stored ({time.perf_counter() - started:.0f} s)")
    stored_seconds = time.perf_counter() - started
    print(f"   synthetic scoring run: {created:,} predictions stored ({stored_seconds:.0f} s)")
    return created


def _job_wait(job, worker: Worker, started: float) -> tuple[float, dict, dict]:
    """Poll the running job until it is done or failed: (seconds paused, CPU by pid, threads by pid).

    Prints its progress every PROGRESS_SECONDS; a poll more than PAUSE_SECONDS late counts as paused.
    """
    from django.db.models import Sum

    from explanations.models import CohortJob, CohortJobChunk

    cpu, threads = {}, {}
    paused, polled = 0.0, time.monotonic()
    poll = 0.02  # a 10k-row job takes about a second: poll finely at first, then every 0.5 s
    reported = polled
    while CohortJob.objects.get(pk=job.pk).status not in (
        CohortJob.Status.DONE,
        CohortJob.Status.FAILED,
    ):
        worker.sample_rss()
        _usage(worker.pid, cpu, threads)
        if worker.process.poll() is not None:
            raise SystemExit("the worker exited")
        time.sleep(poll)
        now = time.monotonic()
        if now - polled > PAUSE_SECONDS:
            paused += now - polled - poll
        polled = now
        poll = min(0.5, poll * 1.1)
        if now - reported > PROGRESS_SECONDS:
            reported = now
            done = CohortJobChunk.objects.filter(job=job, status=CohortJobChunk.Status.DONE)
            rows_done = done.aggregate(rows=Sum("rows"))["rows"] or 0
            cpu_row = f"{sum(cpu.values()) * 1000 / rows_done:.2f}" if rows_done else "-"
            print(
                f"   ... {done.count()}/{job.chunks_total} chunks, {rows_done:,} rows "
                f"({time.perf_counter() - started - paused:.0f} s running, {paused:.0f} s paused); "
                f"worker CPU {cpu_row} ms/row so far; peak RSS so far: {worker.rss_text()}; {_load()}"
            )
    return paused, cpu, threads


def cohort_job_measured(version, worker: Worker, *, chunk_size: int | None, concurrency: int):
    """Part 3 and 4 for one job over every prediction so far, with a fresh worker: (job, rows/s, CPU s).

    The job is timed from its dispatch to the finish its finalisation records, on a worker that is up
    and idle; the worker's CPU is counted from then on.
    """
    from django.utils import timezone

    from explanations.models import CohortJobChunk
    from explanations.services import cohort_job_create, cohort_job_run

    # A fresh worker per job: its peak RSS is the job's, model loading included. Tasks queued before
    # it (the debounced monitoring refresh that the latency posts scheduled, minutes of work over the
    # whole cohort) would run beside the measured job: dropped.
    from sightline.celery import app

    dropped = app.control.purge()
    worker.start()
    worker.peaks.clear()
    ready = worker.wait_ready()
    started = time.perf_counter()
    job = cohort_job_create(version=version, chunk_size=chunk_size)
    print(
        f"   job {job.pk}: {job.chunks_total} chunks cut in {time.perf_counter() - started:.1f} s; "
        f"worker up and idle after {ready:.1f} s (not counted); tasks queued before it, dropped: {dropped}"
    )
    load_before = _load()
    idle_cpu: dict = {}
    _usage(worker.pid, idle_cpu, {})
    dispatched, started = timezone.now(), time.perf_counter()
    cohort_job_run(job=job)
    paused, cpu, threads = _job_wait(job, worker, started)
    worker.sample_rss()
    _usage(worker.pid, cpu, threads)
    worker.stop()
    job.refresh_from_db()
    rerun = CohortJobChunk.objects.filter(job=job, attempts__gt=1).count()
    running = (job.finished_at - dispatched).total_seconds() - paused if job.finished_at else 0.0
    job_cpu = sum(cpu.values()) - sum(idle_cpu.get(pid, 0.0) for pid in cpu)
    job_rate = job.rows_total / running if running else 0.0
    spread = ", ".join(f"{n} threads ({other:.1f} s CPU off the main one)" for n, other in threads.values())
    print(
        f"3. cohort SHAP on {job.rows_total:,} rows ({job.chunks_total} chunks of {job.chunk_size}, "
        f"{concurrency} worker processes): {job_rate:,.0f} rows/s ({running:.2f} s from dispatch to "
        f"finished, {paused:.0f} s paused left out; job {job.status}, {rerun} chunks run more than "
        f"once); worker CPU {job_cpu * 1000 / job.rows_total:.3f} ms/row ({job_cpu / running:.2f} of "
        f"{concurrency} cores busy); {load_before} -> {_load()}"
    )
    print(f"4. worker peak RSS of the job on {job.rows_total:,} rows: {worker.rss_text()}; threads: {spread}")
    print(f"   stages of the job (worker seconds summed over its chunks): {_stages_text(job)}")
    return job, job_rate, job_cpu


def _direct_shap(serving, matrix) -> tuple[float, float, float]:
    """(seconds running, seconds paused, CPU seconds) of shap.TreeExplainer over `matrix` in batches."""
    from engine import treeshap as core
    from explanations.services.cohort import EXPLAIN_BATCH

    started, cpu_started = time.perf_counter(), time.process_time()
    direct_paused = 0.0
    # The reference engine, whatever engine the version is explained by in service.
    reference = core.tree_explainer(serving.model.shap_model, serving.background)
    for start in range(0, len(matrix), EXPLAIN_BATCH):
        wall, cpu_time = time.perf_counter(), time.process_time()
        core.explain(reference, matrix[start : start + EXPLAIN_BATCH])
        # One thread computes: a batch whose wall time exceeds its CPU time by this much waited.
        waited = (time.perf_counter() - wall) - (time.process_time() - cpu_time)
        if waited > PAUSE_SECONDS:
            direct_paused += waited
    direct_seconds = time.perf_counter() - started - direct_paused
    return direct_seconds, direct_paused, time.process_time() - cpu_started


def direct_comparison(version, serving, jobs: list, *, direct_rows: int) -> None:
    """Part 3 (a) and (b) on the first job's rows, and each job's rate and CPU against them."""
    import xgboost as xgb

    from explanations.services.cohort import EXPLAIN_BATCH
    from patients.models import Prediction

    first = jobs[0][0]
    rows = (
        Prediction.objects.filter(model_version=version, pk__lte=first.max_prediction_id)
        .order_by("pk")
        .values_list("features", flat=True)
    )
    if direct_rows:
        rows = rows[:direct_rows]
    matrix = serving.encode_many(list(rows.iterator(chunk_size=5000)))
    load_before = _load()
    direct_seconds, direct_paused, direct_cpu = _direct_shap(serving, matrix)
    direct_rate = len(matrix) / direct_seconds
    direct_load = f"{load_before} -> {_load()}"
    started = time.perf_counter()
    serving.booster.predict(xgb.DMatrix(matrix, feature_names=serving.feature_names), pred_contribs=True)
    native_rate = len(matrix) / (time.perf_counter() - started)
    print(
        f"   (a) shap.TreeExplainer directly, one process, the first job's first {len(matrix):,} rows, "
        f"batches of {EXPLAIN_BATCH}, {version.background_size}-row background: "
        f"{direct_rate:,.0f} rows/s ({direct_seconds:.0f} s running, {direct_paused:.0f} s paused "
        f"left out), CPU {direct_cpu * 1000 / len(matrix):.2f} ms/row; {direct_load}"
    )
    print(f"   (b) xgboost pred_contribs (path-dependent, no background): {native_rate:,.0f} rows/s")
    direct_ms = direct_cpu * 1000 / len(matrix)
    for job, job_rate, job_cpu in jobs:
        print(
            f"3. job/direct on {job.rows_total:,} rows: {job_rate / direct_rate:.2f}x by wall rate; "
            f"by CPU {job_cpu * 1000 / job.rows_total:.2f} ms/row in the job, {direct_ms:.2f} direct"
        )
