"""Benchmark of the clinician worklist (issue 5). Prints figures; not part of the test run.

Seeds a bench database of its own (default sightline_bench_worklist, Redis db 10) with synthetic
data, every patient and prediction labelled simulated: 2,000 patients over 10 units, 500 scores
each (1,000,000 predictions, written with COPY), the alert rows ingest would have made for every
medium/high score, and 500 patients whose current score is an alert (the active alerts). Then
times the worklist page, its JSON in full and the page's own poll when nothing changed (a 304),
through Django's test client (server-side: middleware, queries, rendering; no network) for an
admin and for a clinician of two units, and the alert page of a high-tier patient, and prints
p50/p95 over the requests, the CPU time per request of this process and of the PostgreSQL backend
(on a shared machine the CPU times move less than the wall times), and the queries per request.

    .venv/bin/python bench/worklist.py               # seed (a few minutes), then time
    .venv/bin/python bench/worklist.py --skip-seed   # time again against the seeded database

Options: --patients, --per-patient, --active, --requests, --skip-seed, --gc-freeze.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._stack import recreate_database  # noqa: E402
from bench._worklist_seed import (  # noqa: E402
    copy_predictions,
    explain_current_scores,
    insert_alerts,
    seed_patients,
)

BENCH_DB = "sightline_bench_worklist"
UNITS = ["MICU", "SICU", "CCU", "CVICU", "NICU-A", "RESP-ICU", "TRAUMA", "BURN", "NEURO", "STEPDOWN"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def seed(*, patients: int, per_patient: int, active: int, seed_value: int = 5) -> None:
    """Synthetic patients, predictions (COPY), their alerts and the current-score pointers."""
    import numpy as np
    from django.db import connection
    from django.utils import timezone

    from explanations.services.current import patients_current_refresh
    from patients.models import Alert, Prediction
    from tests.fixtures.factories import model_version_create

    rng = np.random.default_rng(seed_value)
    version = model_version_create(name="bench-synthetic-worklist")
    now = timezone.now()
    started = time.perf_counter()
    patient_rows = seed_patients(patients, units=UNITS)
    # The patients whose current score is an alert (high for a third of them, else medium).
    alerting = set(rng.choice(len(patient_rows), size=active, replace=False).tolist())
    with connection.cursor() as cursor:
        copy_predictions(
            cursor,
            rng,
            version=version,
            patient_rows=patient_rows,
            alerting=alerting,
            per_patient=per_patient,
            total=patients * per_patient,
            now=now,
            started=started,
        )
        insert_alerts(cursor, started=started)
    # After the alerts: each current score copies its alert with the rest of what the lists read.
    patients_current_refresh()
    explain_current_scores()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    active_now = Alert.objects.filter(prediction__current_for__isnull=False).count()
    print(
        f"seeded {Prediction.objects.count():,} predictions of {patients:,} patients, "
        f"{Alert.objects.count():,} alerts ({active_now} active) in {time.perf_counter() - started:.0f} s"
    )


def users():
    from django.contrib.auth import get_user_model

    from accounts.models import Profile

    User = get_user_model()
    admin, _ = User.objects.get_or_create(
        username="bench-admin", defaults={"is_superuser": True, "is_staff": True}
    )
    clinician, created = User.objects.get_or_create(username="bench-clinician")
    if created:
        Profile.objects.create(user=clinician, role=Profile.Role.CLINICIAN, units=UNITS[:2])
    return {"admin (10 units)": admin, "clinician (2 units)": clinician}


def _backend_cpu_ns(pid: int | None) -> int | None:
    """CPU time the database backend serving this process has used (Linux schedstat, ns), so
    the SQL's cost is measured apart from how long a busy machine made the query wait."""
    if pid is None:
        return None
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # PostgreSQL on another host: not measured


def time_requests(client, path: str, n: int, *, headers: dict | None = None, status: int = 200) -> dict:
    """Wall time per request (p50/p95/max), this process's CPU time per request (p50/p95), the
    database backend's CPU time per request (mean over the requests), queries and size."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    headers = headers or {}
    for _ in range(3):  # warm-up: templates compiled, connection open
        response = client.get(path, headers=headers)
        assert response.status_code == status, (path, response.status_code)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    timings, cpu = [], []
    backend_before = _backend_cpu_ns(backend)
    for _ in range(n):
        started, cpu_started = time.perf_counter(), time.process_time()
        response = client.get(path, headers=headers)
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    backend_after = _backend_cpu_ns(backend)
    with CaptureQueriesContext(connection) as queries:
        client.get(path, headers=headers)
    db_cpu = None
    if backend_before is not None and backend_after is not None:
        db_cpu = (backend_after - backend_before) / n / 1e6
    return {
        "p50": statistics.median(timings),
        "p95": _percentile(timings, 95),
        "max": max(timings),
        "cpu_p50": statistics.median(cpu),
        "cpu_p95": _percentile(cpu, 95),
        "db_cpu": db_cpu,
        "queries": len(queries),
        "kb": len(response.content) / 1024,
    }


def _row(label: str, page: str, t: dict) -> str:
    db_cpu = "-" if t["db_cpu"] is None else f"{t['db_cpu']:.1f}"
    return (
        f"{label:22} {page:16} {t['p50']:7.1f} {t['p95']:7.1f} {t['max']:7.1f} {t['cpu_p50']:8.1f} "
        f"{t['cpu_p95']:8.1f} {db_cpu:>7} {t['queries']:7d} {t['kb']:5.0f}"
    )


def measure(requests: int) -> None:
    from django.test import Client

    from patients.models import Alert, Prediction

    print(
        f"\n{Prediction.objects.count():,} stored predictions; "
        f"{Alert.objects.filter(prediction__current_for__isnull=False).count()} active alerts"
    )
    # A high-tier current alert in the clinician's first unit, so both users open the same page.
    alert = (
        Alert.objects.filter(prediction__current_for__isnull=False, unit=UNITS[0], tier="high")
        .order_by("-risk", "id")
        .first()
    )
    print(
        "wall: server-side time through Django's test client (p50/p95/max); cpu: this process's CPU "
        "time per request (p50/p95); db cpu: the PostgreSQL backend's CPU per request (mean)"
    )
    print(
        f"{'user':22} {'page':16} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'cpu p50':>8} {'cpu p95':>8} "
        f"{'db cpu':>7} {'queries':>7} {'KB':>5}"
    )
    for label, user in users().items():
        client = Client()
        client.force_login(user)
        for path in ("/", "/worklist.json", "/?page=3", "/?tier=high"):
            print(_row(label, path, time_requests(client, path, requests)), flush=True)
        # The page's own poll: it sends the version of the list it holds; unchanged, that is a 304.
        version = client.get("/worklist.json").json()["version"]
        timed = time_requests(
            client, "/worklist.json", requests, headers={"If-None-Match": f'"{version}"'}, status=304
        )
        print(_row(label, "poll, unchanged", timed), flush=True)
        timed = time_requests(client, f"/alerts/{alert.pk}/", requests)
        print(_row(label, "/alerts/<high>/", timed), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--per-patient", type=int, default=500)
    parser.add_argument("--active", type=int, default=500, help="patients whose current score is an alert")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--skip-seed", action="store_true", help="time against the already seeded database")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="the garbage-collector settings of sightline/wsgi.py (gc.freeze() after start-up, fewer "
        "full collections), as the server runs",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10"))
    args = parser.parse_args()

    os.environ.update(
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        DJANGO_SETTINGS_MODULE="sightline.settings",
        LOG_LEVEL="WARNING",
        DB_CONN_MAX_AGE="60",
    )
    if not args.skip_seed:
        base, name = args.database_url.rsplit("/", 1)
        recreate_database(name, admin_url=f"{base}/postgres")
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    redis.Redis.from_url(args.redis_url).flushdb()
    print("Sightline worklist benchmark (issue 5). Synthetic data: every patient and score is simulated.")
    call_command("migrate", verbosity=0)
    if not args.skip_seed:
        seed(patients=args.patients, per_patient=args.per_patient, active=args.active)
    if args.gc_freeze:
        import gc

        from sightline.gc_tuning import THRESHOLDS, serving_gc_setup

        serving_gc_setup()
        print(
            f"as sightline/wsgi.py: gc.freeze() ({gc.get_freeze_count():,} start-up objects left out of "
            f"garbage collection), thresholds {THRESHOLDS}"
        )
    measure(args.requests)


if __name__ == "__main__":
    main()
