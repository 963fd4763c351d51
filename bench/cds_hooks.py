"""Benchmark of the CDS Hooks patient-view call (issue 17). Prints figures; not part of the test run.

Seeds a bench database of its own (default sightline_bench_cds, Redis db 11) with the worklist
benchmark's synthetic data (bench/worklist.py: 2,000 patients x 500 scores = 1,000,000 predictions,
500 active alerts, every row labelled simulated), puts its model in production, registers an EHR
(keys generated here) and maps a practitioner to a clinician of two units. Then times
``POST /cds-services/<model>`` for a patient with a current high-tier alert, each call with a fresh
ES384 JWT (verification, the replay insert, the access guard, the card, the audit record), through
Django's test client (server-side; no network), and prints p50/p95/max and the queries per call.

    .venv/bin/python bench/cds_hooks.py               # seed (a few minutes), then time
    .venv/bin/python bench/cds_hooks.py --skip-seed   # time again against the seeded database
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._stack import recreate_database  # noqa: E402
from bench.worklist import UNITS, _percentile, seed, users  # noqa: E402

BENCH_DB = "sightline_bench_cds"
PRACTITIONER = "Practitioner/bench-1"


def prepare():
    """Production version, a registered EHR with fresh keys, the practitioner mapping, the patient."""
    from interop.models import PractitionerMapping, RegisteredEhr
    from models_registry.models import ModelVersion
    from patients.models import Alert
    from tests.fixtures.fake_ehr import FakeEhr

    version = ModelVersion.objects.select_related("registered_model").get(
        registered_model__name="bench-synthetic-worklist"
    )
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.PRODUCTION)
    ehr_keys = FakeEhr(port=1)
    ehr_keys.generate_keys()
    ehr, _ = RegisteredEhr.objects.update_or_create(
        iss=ehr_keys.iss, defaults={"jwks": ehr_keys.jwks(), "name": "bench EHR", "revoked_at": None}
    )
    clinician = users()["clinician (2 units)"]
    PractitionerMapping.objects.update_or_create(
        ehr=ehr, fhir_user=PRACTITIONER, defaults={"user": clinician}
    )
    alert = (
        Alert.objects.filter(prediction__current_for__isnull=False, unit=UNITS[0], tier="high")
        .select_related("patient")
        .order_by("-risk", "id")
        .first()
    )
    return version.registered_model.name, ehr_keys, alert


def measure(requests: int) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from patients.models import Prediction

    service, ehr_keys, alert = prepare()
    path = f"/cds-services/{service}"
    client = Client()

    def call(token: str):
        body = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": PRACTITIONER, "patientId": alert.patient.external_id},
        }
        response = client.post(
            path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
        assert response.status_code == 200 and len(response.json()["cards"]) == 1, response.content[:300]
        return response

    # Tokens are minted before the clock starts: the EHR signs, Sightline only verifies.
    tokens = [ehr_keys.cds_jwt("http://testserver" + path) for _ in range(requests + 4)]
    for token in tokens[:3]:
        call(token)
    timings = []
    for token in tokens[3:-1]:
        started = time.perf_counter()
        call(token)
        timings.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as queries:
        call(tokens[-1])
    print(f"\n{Prediction.objects.count():,} stored predictions; patient {alert.patient.external_id} (high)")
    print(
        f"POST {path}: p50 {statistics.median(timings):.1f} ms, p95 {_percentile(timings, 95):.1f} ms, "
        f"max {max(timings):.1f} ms over {requests} calls; {len(queries)} queries a call"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--per-patient", type=int, default=500)
    parser.add_argument("--active", type=int, default=500)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--skip-seed", action="store_true")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"))
    args = parser.parse_args()
    os.environ.update(
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        DJANGO_SETTINGS_MODULE="sightline.settings",
        LOG_LEVEL="WARNING",
        CDS_PUBLIC_BASE_URL="http://testserver",
    )
    if not args.skip_seed:
        base, name = args.database_url.rsplit("/", 1)
        recreate_database(name, admin_url=f"{base}/postgres")
    import django

    django.setup()
    from django.core.management import call_command

    print("Sightline CDS Hooks benchmark (issue 17). Synthetic data: every patient and score is simulated.")
    call_command("migrate", verbosity=0)
    if not args.skip_seed:
        seed(patients=args.patients, per_patient=args.per_patient, active=args.active)
    measure(args.requests)


if __name__ == "__main__":
    main()
