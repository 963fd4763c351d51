"""Full explanations per second: the per-prediction worker draining a backlog (issue 16).

    .venv/bin/python bench/worker_batches.py [--predictions 20000] [--concurrency 2] [--profile 1000]

A database of its own (sightline_bench_batches, recreated) and Redis db 10 (flushed): the demo
bundle registered and promoted, then --predictions of the demo's scoring payloads (simulated
patients, resampled with new ids) ingested in this process while no worker runs, so their
explanations wait in Redis exactly as bulk ingest queued them (messages of up to 200). A Celery
worker with --concurrency processes then starts, and the clock runs until none is pending or
running. A full explanation is SHAP against the whole background, 20 stability re-explanations,
uncertainty, similar patients, the cohort aggregates and the stored row.

Prints explanations per second from the worker's start (its start-up included) and in the steady
part (from 10% to 100% done), CPU per explanation of the worker's processes, their peak RSS, and
how many failed. --profile N first explains N of them in this process under cProfile (in batches of
200, as the worker does) and prints where the time goes; those are then done before the worker
starts, and the drain is measured on the rest.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._stack import _start_worker, _stop, bench_env, cpu_seconds, demo_bundle, manage, peak_rss_mb  # noqa: E402

MODEL = "icu-mortality-30d"
BATCH = 200


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--profile", type=int, default=0, help="explain this many in-process under cProfile")
    parser.add_argument("--timeout", type=int, default=1800)
    return parser.parse_args()


def _ingest(count: int) -> list[int]:
    """Ingest `count` resampled demo payloads in this process; return their explanation ids."""
    from demo.rhc import scoring_payloads
    from explanations.services import prediction_ingest_many
    from patients.models import Prediction

    pool = list(scoring_payloads(model_name=MODEL))
    for start in range(0, count, 500):
        payloads = []
        for i in range(start, min(count, start + 500)):
            payload = dict(pool[i % len(pool)])
            payload["external_id"] = f"batches/{i}"
            payloads.append(payload)
        results = prediction_ingest_many(payloads=payloads, source="bench", simulated=True)
        failed = [r for r in results if not hasattr(r, "prediction")]
        if failed:
            raise SystemExit(f"ingest failed: {failed[:3]}")
    return list(
        Prediction.objects.filter(external_id__startswith="batches/")
        .order_by("pk")
        .values_list("explanation__pk", flat=True)
    )


def _profile(explanation_ids: list[int]) -> None:
    from explanations.services import explanations_compute_batch

    profiler = cProfile.Profile()
    started, cpu = time.perf_counter(), time.process_time()
    profiler.enable()
    for start in range(0, len(explanation_ids), BATCH):
        explanations_compute_batch(explanation_ids[start : start + BATCH])
    profiler.disable()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    n = len(explanation_ids)
    print(
        f"\n== in-process, under cProfile: {n:,} explanations in {wall:.1f} s "
        f"({cpu / n * 1000:.2f} ms CPU each, profiler overhead included)"
    )
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    print(out.getvalue())


def _drain(env: dict, total: int, *, concurrency: int, timeout: int) -> None:
    from django.db.models import Count

    from explanations.models import Explanation

    waiting = Explanation.objects.filter(status__in=["pending", "running"])
    left = waiting.count()
    log_dir = ROOT / "var" / "bench_batches_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"\n== worker, {concurrency} processes, draining {left:,} queued explanations", flush=True)
    started = time.monotonic()
    worker = _start_worker(env, worker_concurrency=concurrency, log_dir=log_dir, worker_nice=0)
    tenth_at, cpu_at_tenth, left_at_tenth = None, 0.0, 0
    try:
        while left and time.monotonic() - started < timeout:
            time.sleep(0.25)
            left = waiting.count()
            if tenth_at is None and left <= 0.9 * total:
                tenth_at, cpu_at_tenth, left_at_tenth = time.monotonic(), cpu_seconds(worker.pid), left
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(worker.pid)
        rss = peak_rss_mb(worker)
    finally:
        _stop(worker)
    statuses = dict(Explanation.objects.values_list("status").annotate(n=Count("pk")))
    done = total - left
    print(f"statuses: {statuses}")
    print(f"all {done:,} in {elapsed:.1f} s from the worker's start: {done / elapsed:,.0f} explanations/s")
    if tenth_at is not None:
        steady = started + elapsed - tenth_at
        steady_done = left_at_tenth - left
        print(
            f"steady (10% -> 100%): {steady_done:,} in {steady:.1f} s: "
            f"{steady_done / steady:,.0f} explanations/s, "
            f"worker CPU {(cpu - cpu_at_tenth) / steady_done * 1000:.2f} ms per explanation"
        )
    print(
        f"worker CPU in all {cpu:.0f} s ({cpu / max(1, done) * 1000:.2f} ms per explanation); "
        f"peak RSS {rss:.0f} MB"
    )


def main() -> None:
    args = _arguments()
    env = bench_env(
        database="sightline_bench_batches",
        redis_db=10,
        store=ROOT / "var" / "bench_batches_store",
        queue="sightline-bench-batches",
    )
    print("setting up: migrate, register the demo bundle ...", flush=True)
    manage(env, "migrate", "--noinput")
    manage(env, "register_model", str(demo_bundle(env)), "--promote")
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "MODEL_STORE", "CELERY_QUEUE")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sightline.settings")
    import django

    django.setup()
    from explanations.services import version_profile_loaded
    from models_registry.selectors import production_versions

    version_profile_loaded(production_versions().get())  # the profile is built at registration
    started = time.perf_counter()
    ids = _ingest(args.predictions)
    print(f"ingested {len(ids):,} predictions in {time.perf_counter() - started:.1f} s (no worker running)")
    if args.profile:
        _profile(ids[: args.profile])
    _drain(env, len(ids) - args.profile, concurrency=args.concurrency, timeout=args.timeout)


if __name__ == "__main__":
    main()
