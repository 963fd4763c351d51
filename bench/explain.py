"""Benchmark of the explanation engine (issue 4). Prints figures; not part of the test run.

On the demo bundle (trained into a temporary directory and registered) and a scoring run resampled
from the RHC cohort (every row labelled simulated/synthetic):

1. Per-explanation latency, POST /api/v1/predictions/ to the explanation stored as ready by a real
   Celery worker (SHAP + uncertainty + similar patients + stability + cohort update), p50/p95, and
   the worker's own compute time (started_at -> finished_at).
2. What-if latency (POST /api/v1/predictions/{id}/what-if/, in this process, explainer warm).
3. Cohort SHAP throughput (rows/s) of the chunked Celery recompute job with a 2-process worker,
   beside (a) shap.TreeExplainer called directly in this process on the same rows, model and
   background, and (b) XGBoost's native pred_contribs (path-dependent, no background).
4. Peak RSS of the worker processes (VmHWM of the worker's pool processes).

    .venv/bin/python bench/explain.py [--rows 100000] [--latency 200] [--chunk-size 2000]

Uses its own database (default postgres://postgres@127.0.0.1:5432/sightline_bench, created if
missing, set --database-url) and Redis (default redis://127.0.0.1:6379/15, --redis-url).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _database_create(url: str) -> None:
    import psycopg2
    from psycopg2 import sql

    base, name = url.rsplit("/", 1)
    connection = psycopg2.connect(f"{base}/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    connection.close()


def _tree(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            out.extend(_tree(int(child)))
    return out


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="synthetic scoring rows for the cohort job")
    parser.add_argument("--latency", type=int, default=200, help="predictions posted one by one for latency")
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sightline_bench"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    args = parser.parse_args()

    store = Path(tempfile.mkdtemp(prefix="sightline-bench-store-"))
    queue = f"sightline-bench-{uuid.uuid4().hex[:8]}"
    os.environ.update(
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        MODEL_STORE=str(store),
        CELERY_QUEUE=queue,
        DJANGO_SETTINGS_MODULE="sightline.settings",
        LOG_LEVEL="WARNING",
    )
    _database_create(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import numpy as np
    import xgboost as xgb
    from rest_framework.test import APIClient

    from clinician_ui.models import Profile
    from explanations import core
    from explanations.auth import service_token_create
    from explanations.models import CohortJob, Explanation, Prediction
    from explanations.services import cohort_job_create, cohort_job_run, version_profile_build
    from explanations.services.simulate import predictions_resampled_create
    from models_registry.demo_rhc import scoring_payloads
    from models_registry.services import model_register
    from models_registry.serving import serving_model
    from models_registry.training import train_demo_bundle

    print(
        "Sightline explanation benchmark (issue 4). Synthetic data: RHC rows resampled, labelled simulated."
    )
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

    env = {**os.environ, "DB_CONN_MAX_AGE": "60"}
    celery = Path(sys.executable).with_name("celery")
    worker = subprocess.Popen(
        [str(celery), "-A", "sightline", "worker", "--pool=prefork", "-c", str(args.concurrency), "-Q", queue]
        + ["--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = {"mb": 0.0}

    def sample_rss() -> None:
        for pid in _tree(worker.pid):
            peak["mb"] = max(peak["mb"], _hwm_mb(pid))

    try:
        from sightline.celery import app

        app.conf.task_always_eager, app.conf.task_default_queue = False, queue
        _, key = service_token_create(name=f"bench-{uuid.uuid4().hex[:6]}")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        run_key = uuid.uuid4().hex[:8]
        payloads = list(scoring_payloads(model_name=version.registered_model.name, limit=args.latency + 5))
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
        sample_rss()
        print(
            f"1. explanation latency, POST to stored (n={len(latencies)}): "
            f"p50 {_percentile(latencies, 50):.0f} ms, p95 {_percentile(latencies, 95):.0f} ms; "
            f"worker compute p50 {_percentile(computes, 50):.0f} ms, p95 {_percentile(computes, 95):.0f} ms"
        )

        from django.contrib.auth import get_user_model

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
        w50, w95 = _percentile(timings, 50), _percentile(timings, 95)
        print(f"2. what-if latency (n={len(timings)}): p50 {w50:.0f} ms, p95 {w95:.0f} ms")

        started = time.perf_counter()
        predictions_resampled_create(
            version=version,
            n=args.rows,
            seed=int(time.time()),
            run_at=datetime.now(UTC),
            prefix=f"bench-{run_key}",
        )
        stored_seconds = time.perf_counter() - started
        print(f"   synthetic scoring run: {args.rows:,} predictions stored in {stored_seconds:.0f} s")
        job = cohort_job_create(version=version, chunk_size=args.chunk_size)
        started = time.perf_counter()
        cohort_job_run(job=job)
        while CohortJob.objects.get(pk=job.pk).status not in (CohortJob.Status.DONE, CohortJob.Status.FAILED):
            sample_rss()
            if worker.poll() is not None:
                raise SystemExit("the worker exited")
            time.sleep(0.5)
        job_seconds = time.perf_counter() - started
        sample_rss()
        job.refresh_from_db()
        job_rate = job.rows_total / job_seconds

        rows = (
            Prediction.objects.filter(model_version=version).order_by("pk").values_list("features", flat=True)
        )
        matrix = np.vstack([serving.encode(f) for f in rows.iterator(chunk_size=5000)])
        started = time.perf_counter()
        core.explain(serving.explainer, matrix)
        direct_seconds = time.perf_counter() - started
        direct_rate = len(matrix) / direct_seconds
        started = time.perf_counter()
        serving.booster.predict(xgb.DMatrix(matrix, feature_names=serving.feature_names), pred_contribs=True)
        native_rate = len(matrix) / (time.perf_counter() - started)
        print(
            f"3. cohort SHAP on {job.rows_total:,} rows ({job.chunks_total} chunks of {args.chunk_size}, "
            f"{args.concurrency} worker processes): {job_rate:,.0f} rows/s "
            f"({job_seconds:.0f} s, job {job.status})"
        )
        print(
            f"   (a) shap.TreeExplainer directly, one process, same rows/model/"
            f"{version.background_size}-row background: {direct_rate:,.0f} rows/s ({direct_seconds:.0f} s)"
            f" -> job/direct = {job_rate / direct_rate:.2f}x"
        )
        print(f"   (b) xgboost pred_contribs (path-dependent, no background): {native_rate:,.0f} rows/s")
        print(f"4. worker peak RSS (largest process): {peak['mb']:.0f} MB")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


if __name__ == "__main__":
    main()
