"""Benchmark of the monitoring dashboard (issue 6). Prints figures; not part of the test run.

1. Drift of 100,000 current rows against the version's reference set (every feature's PSI, KS or
   chi-squared, Wasserstein, missingness, the distribution overlays, prediction drift), in a fresh
   process so its peak RSS is its own. Beside it, in the same run, Evidently's data-drift report
   (DataDriftPreset, computed and exported as JSON) on the same reference and current rows, in its
   own process, when an interpreter with Evidently is given (--evidently-python; default
   var/evidently-venv/bin/python if present). Evidently is not a Sightline dependency: make that
   environment with `python3 -m venv var/evidently-venv && var/evidently-venv/bin/pip install
   evidently==0.7.23 "pandas<3" pyarrow`. Without it the issue's quoted figure (7 s, 570 MB) is
   printed instead, marked as quoted.
2. A year of hourly scores on 10 units, seeded into a bench database (default sightline_bench_drift;
   every row is labelled simulated): the Celery task's time to compute the year's summary (cold), and
   the dashboard's server-side time (page + its five chart-data views, read from the cache).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sightline_bench_drift .venv/bin/python bench/drift.py

Options: --rows (current rows for part 1), --beds (beds per unit scored hourly; default 1, i.e.
87,600 scores), --skip-db.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVIDENTLY_SECONDS, EVIDENTLY_MB = 7.0, 570  # quoted in issue 6 for this machine; not measured here
BENCH_DB = "sightline_bench_drift"


def _peak_mb() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: on Linux that keeps the parent's
    peak across fork and exec, so a child would report its parent's memory."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def drift_worker(bundle_dir: str, rows: int, frames_dir: str | None = None) -> None:
    """Part 1 in its own process: print one JSON line of figures."""
    import numpy as np
    import pandas as pd
    import yaml

    from engine import drift

    baseline_mb = _peak_mb()
    spec = yaml.safe_load((Path(bundle_dir) / "bundle.yaml").read_text())
    reference = pd.read_parquet(Path(bundle_dir) / "reference.parquet")
    specs = [
        drift.FeatureSpec(
            f["name"], f["kind"], f.get("label", ""), f.get("unit", ""), tuple(f.get("categories", ()))
        )
        for f in spec["features"]
        if f.get("decision_time", True)
    ]
    names = [s.name for s in specs]
    rng = np.random.default_rng(7)
    current = reference.iloc[rng.integers(0, len(reference), rows)].reset_index(drop=True)
    current["creatinine"] = current["creatinine"] * 1.3  # one shifted feature (synthetic)
    if frames_dir:
        reference[names].to_parquet(Path(frames_dir) / "reference.parquet", index=False)
        current[names].to_parquet(Path(frames_dir) / "current.parquet", index=False)
    loaded_mb = _peak_mb()
    started = time.perf_counter()
    table = drift.drift_table(reference[names], current[names], specs)
    for s in specs:
        drift.distribution(reference[s.name], current[s.name], s)
    drift.prediction_drift(
        reference["expected_risk"], current["expected_risk"], tier_high=0.5, tier_medium=0.25,
        current_windows=np.arange(rows) // (rows // 30),
    )  # fmt: skip
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mb": _peak_mb(),
                "baseline_mb": baseline_mb,
                "loaded_mb": loaded_mb,
                "features": len(specs),
                "reference_rows": len(reference),
                "top": [table[0]["feature"], table[0]["severity"], round(table[0]["psi"], 3)],
            }
        )
    )


EVIDENTLY_SCRIPT = """
import json, sys, time
from pathlib import Path
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

def peak_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

reference = pd.read_parquet(sys.argv[1])
current = pd.read_parquet(sys.argv[2])
started = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(current, reference)
result = json.dumps(snapshot.dict(), default=str)
print(json.dumps({"seconds": time.perf_counter() - started, "peak_mb": peak_mb(), "bytes": len(result)}))
"""


def evidently_run(python: Path, frames_dir: Path) -> dict:
    files = [str(frames_dir / "reference.parquet"), str(frames_dir / "current.parquet")]
    out = subprocess.run(
        [str(python), "-c", EVIDENTLY_SCRIPT, *files], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def part_one(bundle_dir: Path, rows: int, evidently_python: Path | None = None) -> None:
    frames_dir = Path(tempfile.mkdtemp(prefix="sightline-drift-frames-"))
    command = [sys.executable, __file__, "--worker", str(bundle_dir), "--rows", str(rows)]
    out = subprocess.run(
        [*command, "--frames-dir", str(frames_dir)],
        capture_output=True, text=True, check=True, cwd=ROOT, env=os.environ,
    )  # fmt: skip
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    f = figures
    print(f"\n1. Drift of {rows:,} current rows against the reference set ({f['reference_rows']:,} rows, "
          f"{f['features']} features)")  # fmt: skip
    print(f"   Sightline engine.drift : {f['seconds']:6.2f} s, peak RSS {f['peak_mb']:5.0f} MB "
          f"(after imports {f['baseline_mb']:.0f} MB, with data {f['loaded_mb']:.0f} MB)")  # fmt: skip
    if evidently_python is not None and evidently_python.exists():
        e = evidently_run(evidently_python, frames_dir)
        print(f"   Evidently DataDriftPreset  : {e['seconds']:6.2f} s, peak RSS {e['peak_mb']:5.0f} MB "
              f"(same rows, own process, this run; report JSON {e['bytes'] / 1e6:.1f} MB)")  # fmt: skip
    else:
        print(f"   Evidently data-drift report: {EVIDENTLY_SECONDS:6.2f} s, peak RSS {EVIDENTLY_MB:5.0f} MB "
              "(figure quoted in issue 6 for this machine, not measured: no --evidently-python)")  # fmt: skip
    print(f"   most severe feature: {figures['top'][0]} ({figures['top'][1]}, PSI {figures['top'][2]}) "
          "- the synthetic 30 % shift injected into creatinine")  # fmt: skip


def _database(url_db: str) -> None:
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [url_db])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{url_db}"')
    connection.close()


def _seed(version, *, units: int, beds: int, days: int, start) -> int:
    """Hourly scores of every bed of every unit for `days` days; a new patient every 3 days per bed.
    Feature rows and their SHAP values are drawn from the demo cohort's scoring split, scored and
    explained by the registered model once per distinct row. Labelled simulated."""
    from datetime import timedelta

    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from demo import rhc as demo_rhc
    from engine import treeshap as core
    from explanations.models import Explanation
    from models_registry.serving import serving_model
    from patients.models import Alert, AlertAction, Encounter, Outcome, Patient, Prediction

    serving = serving_model(version)
    names = serving.feature_names
    pool = demo_rhc.split_cohort(demo_rhc.load_cohort(demo_rhc.DEFAULT_SEED)).scoring
    inputs = serving.model.prepare(pool[names].to_numpy(dtype=np.float64))
    margins = serving.predict_margin(inputs)
    risks = core.sigmoid(margins)
    shap_values = core.explain(serving.explainer, inputs).values
    specs = {f.name: f for f in version.input_features()}

    def stored(row: int) -> dict:
        out = {}
        for j, name in enumerate(names):
            value = inputs[row, j]
            if np.isnan(value):
                out[name] = {"value": None, "unit": specs[name].unit, "observed_at": None, "source": None}
                continue
            spec = specs[name]
            if spec.kind == "categorical":
                value = spec.categories[int(value)]
            elif spec.kind == "binary":
                value = int(value)
            else:
                value = float(value)
            out[name] = {"value": value, "unit": spec.unit, "observed_at": None, "source": None}
        return out

    features = [stored(i) for i in range(len(pool))]
    contributions = [
        [{"name": n, "shap": float(shap_values[i, j])} for j, n in enumerate(names)] for i in range(len(pool))
    ]
    user, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={"is_superuser": True})
    rng = np.random.default_rng(11)
    hours = days * 24
    stay_hours = 72
    total = 0
    for u in range(units):
        unit = f"BENCH-U{u:02d}"
        for b in range(beds):
            with transaction.atomic():
                stays = range(0, hours, stay_hours)
                patients = Patient.objects.bulk_create(
                    [
                        Patient(
                            external_id=f"sim-{unit}-{b}-{s}",
                            display_name="Simulated",
                            unit=unit,
                            bed=str(b),
                            simulated=True,
                        )
                        for s in stays
                    ]  # fmt: skip
                )
                encounters = Encounter.objects.bulk_create(
                    [
                        Encounter(external_id=f"sim-E-{unit}-{b}-{s}", patient=p)
                        for s, p in zip(stays, patients, strict=True)
                    ]
                )
                # Outcomes arrive for the first 80 % of the year (the rest are still in hospital).
                Outcome.objects.bulk_create(
                    [
                        Outcome(encounter=e, outcome=bool(rng.random() < 0.3))
                        for e in encounters[: int(len(encounters) * 0.8)]
                    ]
                )
                rows = rng.integers(0, len(pool), hours)
                predictions = [
                    Prediction(
                        registered_model=version.registered_model,
                        model_version=version,
                        external_id=f"sim/{unit}/{b}/{h}",
                        patient=patients[h // stay_hours],
                        encounter=encounters[h // stay_hours],
                        unit=unit,
                        bed=str(b),
                        scored_at=start + timedelta(hours=h),
                        risk=float(risks[r]),
                        margin=float(margins[r]),
                        tier=version.tier_for(float(risks[r])),
                        features=features[r],
                        payload_sha256="0" * 64,
                        source="bulk",
                        simulated=True,
                    )  # fmt: skip
                    for h, r in enumerate(rows)
                ]
                Prediction.objects.bulk_create(predictions, batch_size=5000)
                Explanation.objects.bulk_create(
                    [
                        Explanation(
                            prediction=p, status="ready", base_value=0.0, contributions=contributions[r]
                        )
                        for p, r in zip(predictions, rows, strict=True)
                    ],  # fmt: skip
                    batch_size=5000,
                )
                alerts = Alert.objects.bulk_create(
                    [
                        Alert(prediction=p, patient_id=p.patient_id, unit=unit, tier=p.tier, risk=p.risk)
                        for p in predictions
                        if p.tier != "low"
                    ],  # fmt: skip
                    batch_size=5000,
                )
                reasons = ["already_aware", "not_clinically_relevant", "data_error"]
                AlertAction.objects.bulk_create(
                    [
                        AlertAction(
                            alert=a,
                            user=user,
                            role="clinician",
                            action="dismiss" if i % 3 else "accept",
                            reason=reasons[i % 3] if i % 3 else "treatment_changed",
                            shown_at=start,
                            seconds_to_decision=float(rng.exponential(300)),
                            idempotency_key=f"bench-{a.pk}",
                        )
                        for i, a in enumerate(alerts)
                        if i % 2 == 0
                    ],  # fmt: skip
                    batch_size=5000,
                )
            total += len(predictions)
    return total


def _aggregates_backfill(version) -> int:
    """The seed stores explanations directly (not through the worker), so the explanation engine's
    cohort aggregates are filled here the way it fills them: each ready explanation's SHAP values
    summed per (feature, unit, shift, local day). Setup, not part of the timed compute."""
    from django.conf import settings
    from django.db import connection

    from explanations.models import CohortAggregate, Explanation
    from patients.models import Prediction

    if CohortAggregate.objects.filter(version=version).exists():
        return 0
    aggregates = CohortAggregate._meta.db_table
    explanations = Explanation._meta.db_table
    predictions = Prediction._meta.db_table
    local = "(p.scored_at AT TIME ZONE %s)"
    sql = (
        f"INSERT INTO {aggregates} (version_id, feature, unit, shift, day, count, total, total_abs) "  # noqa: S608
        f"SELECT p.model_version_id, elem->>'name', p.unit, "
        f"CASE WHEN extract(hour FROM {local}) BETWEEN 7 AND 18 THEN 'day' ELSE 'night' END, "
        f"{local}::date, count(*), sum((elem->>'shap')::double precision), "
        "sum(abs((elem->>'shap')::double precision)) "
        f"FROM {explanations} e JOIN {predictions} p ON p.id = e.prediction_id "
        "CROSS JOIN LATERAL jsonb_array_elements(e.contributions) elem "
        "WHERE e.status = 'ready' AND p.model_version_id = %s GROUP BY 1, 2, 3, 4, 5"
    )
    tz = settings.HOSPITAL_TIME_ZONE
    with connection.cursor() as cursor:
        cursor.execute(sql, [tz, tz, version.pk])
        return cursor.rowcount


def part_two(bundle_dir: Path, *, units: int, beds: int, days: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sightline.settings")
    os.environ["MODEL_STORE"] = str(Path(tempfile.gettempdir()) / "sightline_bench_drift_store")
    import django

    django.setup()
    from datetime import UTC, datetime

    from django.conf import settings
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client, override_settings

    from models_registry.models import ModelVersion
    from models_registry.services import model_register
    from monitoring import services
    from patients.models import Prediction

    db_name = connection.settings_dict["NAME"]
    print(f"\n2. A year of hourly scores on {units} units ({beds} bed(s) each), database {db_name}, "
          "synthetic rows")  # fmt: skip
    call_command("migrate", verbosity=0)
    version = ModelVersion.objects.filter(status="production").first()
    if version is None:
        version, _ = model_register(path=bundle_dir, promote=True)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    expected = units * beds * days * 24
    have = Prediction.objects.filter(model_version=version).count()
    if have != expected:
        if have:
            raise SystemExit(
                f"{db_name} holds {have} scores, not {expected}: drop the database and run again."
            )
        seeded = time.perf_counter()
        _seed(version, units=units, beds=beds, days=days, start=start)
        seconds = time.perf_counter() - seeded
        print(f"   seeded {expected:,} scores (+ explanations, alerts, actions) in {seconds:.0f} s")
    filled = time.perf_counter()
    if rows := _aggregates_backfill(version):
        print(f"   cohort SHAP aggregates filled from the seeded explanations (setup): {rows:,} rows "
              f"in {time.perf_counter() - filled:.1f} s")  # fmt: skip
    end = start.replace(year=start.year + 1)
    comparison = services.Comparison(version_id=version.pk, start=start, end=end)
    services.summary_invalidate(comparison=comparison)
    started = time.perf_counter()
    summary = services.summary_compute(comparison=comparison)
    cold = time.perf_counter() - started
    print(f"   Celery task, year summary computed from the database (cold): {cold:.2f} s, "
          f"{summary['n_current']:,} scores streamed; peak RSS {_peak_mb():.0f} MB")  # fmt: skip

    with override_settings(ALLOWED_HOSTS=["testserver"]):
        from django.contrib.auth import get_user_model

        admin = get_user_model().objects.get(username="bench-admin")
        client = Client()
        client.force_login(admin)
        query = {"version": version.pk, "from": start.isoformat(), "to": end.isoformat()}
        urls = ["/monitoring/"] + [
            f"/monitoring/data/{name}/"
            for name in ("summary", "feature", "prediction", "performance", "burden")
        ]
        timings = []
        for _ in range(5):
            total = 0.0
            for url in urls:
                params = {} if url == "/monitoring/" else dict(query, feature="creatinine")
                began = time.perf_counter()
                response = client.get(url, params)
                total += time.perf_counter() - began
                assert response.status_code == 200, (url, response.status_code, response.content[:300])
            timings.append(total)
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    median_ms = sorted(timings)[2] * 1000
    print(f"   dashboard, server side (page + 5 chart-data views, cached): median {median_ms:.0f} ms "
          f"over 5 loads (target < 1 s); cache {backend}")  # fmt: skip
    cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=10)
    parser.add_argument("--beds", type=int, default=1)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--skip-db", action="store_true")
    parser.add_argument(
        "--evidently-python",
        type=Path,
        default=ROOT / "var" / "evidently-venv" / "bin" / "python",
        help="a Python with Evidently installed, to measure its data-drift report on the same rows",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--frames-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        drift_worker(args.worker, args.rows, args.frames_dir)
        return
    from demo.training import train_demo_bundle

    bundle_dir = Path(tempfile.gettempdir()) / "sightline_bench_drift_bundle"
    if not (bundle_dir / "bundle.yaml").exists():
        train_demo_bundle(bundle_dir, n_estimators=60, background_size=200)
    part_one(bundle_dir, args.rows, args.evidently_python)
    if args.skip_db:
        return
    os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}")
    _database(os.environ["DATABASE_URL"].rsplit("/", 1)[-1])
    part_two(bundle_dir, units=args.units, beds=args.beds, days=args.days)


if __name__ == "__main__":
    main()
