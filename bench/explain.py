"""Benchmark of the explanation engine (issue 4). Prints figures; not part of the test run.

On the demo bundle (trained into a temporary directory and registered) and a scoring run resampled
from the RHC cohort (every row labelled simulated/synthetic):

1. Per-explanation latency, POST /api/v1/predictions/ to the explanation stored as ready by a real
   Celery worker (SHAP + uncertainty + similar patients + stability + cohort update), p50/p95, and
   the worker's own compute time (started_at -> finished_at).
2. What-if latency (POST /api/v1/predictions/{id}/what-if/, in this process, explainer warm).
3. Cohort SHAP throughput (rows/s) of the chunked Celery recompute job with a 2-process worker,
   beside (a) shap.TreeExplainer called directly in this process on the same rows, model and
   background, in the job's batches of 256 rows, and (b) XGBoost's native pred_contribs
   (path-dependent, no background). Besides wall-clock rates (which depend on what else the
   machine runs), CPU per row: the worker's pool processes' CPU time over the rows, against the
   direct call's own CPU time.
4. Peak RSS of the worker processes (VmHWM of the worker's pool processes and of its main
   process): after the latency runs, and for each cohort size, of a fresh worker that ran only that
   job.

    .venv/bin/python bench/explain.py [--rows 100000] [--latency 200] [--chunk-size 2000]
    .venv/bin/python bench/explain.py --rows 20000,50000,100000 --latency 20  # RSS vs cohort size
    nice -n 19 .venv/bin/python bench/explain.py --rows 1000000 --latency 0 --direct-rows 20000

With several sizes the cohort grows from one to the next (each job covers every prediction of the
version) and the direct figures are measured on the rows of the first job (the first
--direct-rows of them). --latency 0 skips parts 1 and 2.

On a shared machine, or one whose benchmark is paused (SIGSTOP/SIGCONT of the process group, for
someone else's quiet-machine measurement), read the CPU figures and the RSS: they do not depend on
what else runs. The wall rates leave out the pauses this process sees (a gap of more than
PAUSE_SECONDS between its polls), and the worker's task time limits are raised (--task-time-limit)
so that a chunk paused mid-way is not killed by its soft limit when it resumes.

Uses its own database (default postgres://postgres@127.0.0.1:5432/sightline_bench, recreated on
every run, set --database-url) and Redis (default redis://127.0.0.1:6379/15, --redis-url).
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

from bench._stack import recreate_database  # noqa: E402


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


def _pool(pid: int) -> list[int]:
    return [p for p in _tree(pid) if p != pid]


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _threads(pid: int) -> tuple[int, float]:
    """(threads, CPU seconds of the threads other than the main one) of a process."""
    tasks = [int(t.name) for t in Path(f"/proc/{pid}/task").glob("*")]
    other = 0.0
    for tid in tasks:
        if tid != pid:
            try:
                fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            other += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return len(tasks), other


def _usage(worker: int, cpu: dict, threads: dict) -> None:
    """Record each worker process's CPU seconds and each pool process's threads (kept after exit)."""
    for pid in _tree(worker):
        cpu[pid] = _cpu_seconds(pid)
    for pid in _pool(worker):
        threads[pid] = _threads(pid)


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
    """Seconds per stage summed over the job's chunks, and each stage's share."""
    from explanations.models import CohortJobChunk

    totals: dict[str, float] = {}
    for stages in CohortJobChunk.objects.filter(job=job).values_list("stage_seconds", flat=True):
        for stage, seconds in (stages or {}).items():
            totals[stage] = totals.get(stage, 0.0) + seconds
    whole = sum(totals.values()) or 1.0
    return ", ".join(f"{stage} {seconds:.1f} s ({seconds / whole:.0%})" for stage, seconds in totals.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        default="100000",
        help="synthetic scoring rows for the cohort job; several comma-separated sizes run one job each",
    )
    parser.add_argument(
        "--latency",
        type=int,
        default=200,
        help="predictions posted one by one for latency (0: skip, and what-if)",
    )
    parser.add_argument(
        "--direct-rows",
        type=int,
        default=0,
        help="rows of the first job explained directly and by pred_contribs (default: all of them)",
    )
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--task-time-limit",
        type=int,
        default=6 * 3600,
        help="the worker's soft task time limit in seconds (hard: +60), beyond any pause",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sightline_bench"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows in a log file as it happens
    # Stopped with SIGTERM, still stop the worker (the `finally` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [int(n) for n in args.rows.split(",")]

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
    base, name = args.database_url.rsplit("/", 1)
    recreate_database(name, admin_url=f"{base}/postgres")  # each run on an empty database
    import django

    django.setup()
    from django.core.management import call_command
    from django.db.models import Sum

    call_command("migrate", verbosity=0)
    import xgboost as xgb
    from rest_framework.test import APIClient

    from accounts.auth import service_token_create
    from accounts.models import Profile
    from demo.rhc import scoring_payloads
    from demo.simulate import predictions_resampled_create
    from demo.training import train_demo_bundle
    from engine import treeshap as core
    from explanations.models import CohortJob, CohortJobChunk, Explanation
    from explanations.services import cohort_job_create, cohort_job_run, version_profile_build
    from explanations.services.cohort import EXPLAIN_BATCH
    from models_registry.services import model_register
    from models_registry.serving import serving_model
    from patients.models import Prediction

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

    env = {
        **os.environ,
        "DB_CONN_MAX_AGE": "60",
        "CELERY_TASK_SOFT_TIME_LIMIT": str(args.task_time_limit),
        "CELERY_TASK_TIME_LIMIT": str(args.task_time_limit + 60),
    }
    celery = Path(sys.executable).with_name("celery")

    def worker_start() -> subprocess.Popen:
        return subprocess.Popen(
            [str(celery), "-A", "sightline", "worker", "--pool=prefork", "-c", str(args.concurrency)]
            + [
                "-Q",
                queue,
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def worker_stop(process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    worker: subprocess.Popen | None = None
    peaks: dict[int, float] = {}  # VmHWM of each of the worker's processes

    def sample_rss() -> None:
        for pid in _tree(worker.pid):
            peaks[pid] = max(peaks.get(pid, 0.0), _hwm_mb(pid))

    def rss_text() -> str:
        pool = "/".join(f"{mb:.0f}" for pid, mb in sorted(peaks.items()) if pid != worker.pid)
        return f"pool processes {pool} MB, main process {peaks.get(worker.pid, 0.0):.0f} MB"

    try:
        from sightline.celery import app

        app.conf.task_always_eager, app.conf.task_default_queue = False, queue
        run_key = uuid.uuid4().hex[:8]
        if args.latency:
            worker = worker_start()
            _, key = service_token_create(name=f"bench-{uuid.uuid4().hex[:6]}")
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
            payloads = list(
                scoring_payloads(model_name=version.registered_model.name, limit=args.latency + 5)
            )
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
            c50, c95 = _percentile(computes, 50), _percentile(computes, 95)
            print(
                f"1. explanation latency, POST to stored (n={len(latencies)}): "
                f"p50 {_percentile(latencies, 50):.0f} ms, p95 {_percentile(latencies, 95):.0f} ms; "
                f"worker compute p50 {c50:.0f} ms, p95 {c95:.0f} ms"
            )

            from django.contrib.auth import get_user_model

            admin = get_user_model().objects.create_user(
                username=f"bench-{run_key}", password=uuid.uuid4().hex
            )
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

            sample_rss()
            print(f"4. worker peak RSS after the latency runs: {rss_text()}")

            worker_stop(worker)

        created, jobs = 0, []
        for size in sizes:
            started = time.perf_counter()
            while created < size:  # in parts, so that a long run shows its progress
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
            # A fresh worker per job: its peak RSS is the job's, model loading included.
            worker = worker_start()
            peaks.clear()
            started = time.perf_counter()
            job = cohort_job_create(version=version, chunk_size=args.chunk_size)
            print(f"   job {job.pk}: {job.chunks_total} chunks cut in {time.perf_counter() - started:.1f} s")
            load_before = _load()
            started = time.perf_counter()
            cohort_job_run(job=job)
            cpu, threads = {}, {}
            paused, polled = 0.0, time.monotonic()
            reported = polled
            while CohortJob.objects.get(pk=job.pk).status not in (
                CohortJob.Status.DONE,
                CohortJob.Status.FAILED,
            ):
                sample_rss()
                _usage(worker.pid, cpu, threads)
                if worker.poll() is not None:
                    raise SystemExit("the worker exited")
                time.sleep(0.5)
                now = time.monotonic()
                if now - polled > PAUSE_SECONDS:
                    paused += now - polled - 0.5
                polled = now
                if now - reported > PROGRESS_SECONDS:
                    reported = now
                    done = CohortJobChunk.objects.filter(job=job, status=CohortJobChunk.Status.DONE)
                    rows_done = done.aggregate(rows=Sum("rows"))["rows"] or 0
                    cpu_row = f"{sum(cpu.values()) * 1000 / rows_done:.2f}" if rows_done else "-"
                    print(
                        f"   ... {done.count()}/{job.chunks_total} chunks, {rows_done:,} rows "
                        f"({time.perf_counter() - started - paused:.0f} s running, {paused:.0f} s paused); "
                        f"worker CPU {cpu_row} ms/row so far; peak RSS so far: {rss_text()}; {_load()}"
                    )
            job_seconds = time.perf_counter() - started
            sample_rss()
            _usage(worker.pid, cpu, threads)
            worker_stop(worker)
            job.refresh_from_db()
            rerun = CohortJobChunk.objects.filter(job=job, attempts__gt=1).count()
            running, job_cpu = job_seconds - paused, sum(cpu.values())
            job_rate = job.rows_total / running
            jobs.append((job, job_rate, job_cpu))
            spread = ", ".join(
                f"{n} threads ({other:.1f} s CPU off the main one)" for n, other in threads.values()
            )
            print(
                f"3. cohort SHAP on {job.rows_total:,} rows ({job.chunks_total} chunks of {args.chunk_size}, "
                f"{args.concurrency} worker processes): {job_rate:,.0f} rows/s ({running:.0f} s running, "
                f"{paused:.0f} s paused left out; job {job.status}, {rerun} chunks run more than once); "
                f"worker CPU {job_cpu * 1000 / job.rows_total:.2f} ms/row ({job_cpu / running:.2f} of "
                f"{args.concurrency} cores busy); {load_before} -> {_load()}"
            )
            print(
                f"4. worker peak RSS of the job on {job.rows_total:,} rows: {rss_text()}; threads: {spread}"
            )
            print(f"   stages of the job (worker seconds summed over its chunks): {_stages_text(job)}")

        first = jobs[0][0]
        rows = (
            Prediction.objects.filter(model_version=version, pk__lte=first.max_prediction_id)
            .order_by("pk")
            .values_list("features", flat=True)
        )
        if args.direct_rows:
            rows = rows[: args.direct_rows]
        matrix = serving.encode_many(list(rows.iterator(chunk_size=5000)))
        load_before = _load()
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
        direct_cpu = time.process_time() - cpu_started
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
    finally:
        if worker is not None and worker.poll() is None:
            worker_stop(worker)


if __name__ == "__main__":
    main()
