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

    .venv/bin/python bench/explain.py [--rows 100000] [--latency 200] [--chunk-size 5000]
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
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._explain import (  # noqa: E402
    cohort_job_measured,
    demo_version_register,
    direct_comparison,
    django_start,
    latency_runs,
    predictions_seed,
)
from bench._worker import Worker  # noqa: E402


def _arguments() -> argparse.Namespace:
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
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="rows per chunk (default: the COHORT_CHUNK_SIZE setting)"
    )
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
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows in a log file as it happens
    # Stopped with SIGTERM, still stop the worker (the `finally` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [int(n) for n in args.rows.split(",")]
    queue = django_start(database_url=args.database_url, redis_url=args.redis_url)
    print(
        "Sightline explanation benchmark (issue 4). Synthetic data: RHC rows resampled, labelled simulated."
    )
    version, serving = demo_version_register()
    worker = Worker(concurrency=args.concurrency, queue=queue, task_time_limit=args.task_time_limit)
    try:
        from sightline.celery import app

        app.conf.task_always_eager, app.conf.task_default_queue = False, queue
        run_key = uuid.uuid4().hex[:8]
        if args.latency:
            latency_runs(version, worker, n=args.latency, run_key=run_key)
        created, jobs = 0, []
        for size in sizes:
            created = predictions_seed(version, created=created, size=size, run_key=run_key)
            jobs.append(
                cohort_job_measured(version, worker, chunk_size=args.chunk_size, concurrency=args.concurrency)
            )
        direct_comparison(version, serving, jobs, direct_rows=args.direct_rows)
    finally:
        worker.stop_if_running()


if __name__ == "__main__":
    main()
