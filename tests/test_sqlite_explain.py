"""The embedded SQLite default explains what it ingests (a newcomer's first run): tasks run in-process,
a bulk ingest goes through the batch path and a single post through the lone one, and each
explanation is stored once and counted once in the cohort aggregates, with the bounded sample."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, os
import django
django.setup()
from django.core.management import call_command
from django.db.models import Sum

call_command("migrate", "--noinput", verbosity=0)
call_command("register_model", os.environ["BUNDLE"], "--promote", verbosity=0)

from demo.rhc import scoring_payloads
from explanations.models import CohortAggregate, CohortSample, Explanation
from explanations.services import prediction_ingest, prediction_ingest_many
from models_registry.selectors import production_versions
from models_registry.serving import serving_model

payloads = list(scoring_payloads(model_name="icu-mortality-30d", limit=31))
prediction_ingest_many(payloads=payloads[:30], source="test", simulated=True)
prediction_ingest(payload=payloads[30], source="test", simulated=True)
names = serving_model(production_versions().get()).feature_names
counts = CohortAggregate.objects.values("feature").annotate(n=Sum("count"))
per_slice = {}
for unit, shift, day in CohortSample.objects.values_list("unit", "shift", "day"):
    per_slice[(unit, shift, str(day))] = per_slice.get((unit, shift, str(day)), 0) + 1
print(json.dumps({
    "statuses": sorted(set(Explanation.objects.values_list("status", flat=True))),
    "ready": Explanation.objects.filter(status="ready").count(),
    "counted": sorted({row["n"] for row in counts}),
    "features": len(counts) == len(names),
    "largest_sample": max(per_slice.values()),
    "attempts": sorted(set(Explanation.objects.values_list("attempts", flat=True))),
}))
"""


def test_sqlite_default_explains_a_bulk_and_a_single_post_and_counts_each_once(tmp_path, demo_bundle_dir):
    env = {
        k: v for k, v in os.environ.items() if k not in {"SIGHTLINE_PRODUCTION", "REDIS_URL", "CELERY_QUEUE"}
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        DJANGO_SETTINGS_MODULE="sightline.settings",
        MODEL_STORE=str(tmp_path / "store"),
        BUNDLE=str(demo_bundle_dir),
        COHORT_SAMPLE_SIZE="4",
    )
    result = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures == {
        "statuses": ["ready"],
        "ready": 31,
        "counted": [31],
        "features": True,
        "largest_sample": 4,
        "attempts": [1],
    }
