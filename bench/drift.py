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

from bench._drift import aggregates_backfill, database_ensure, year_seed  # noqa: E402

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


def _version_seeded(bundle_dir: Path, *, units: int, beds: int, days: int, start, db_name: str):
    """The production version (registered from the bundle on a new database) with its year seeded
    (once per database) and its cohort aggregates filled."""
    from django.core.management import call_command

    from models_registry.models import ModelVersion
    from models_registry.services import model_register
    from patients.models import Prediction

    call_command("migrate", verbosity=0)
    version = ModelVersion.objects.filter(status="production").first()
    if version is None:
        version, _ = model_register(path=bundle_dir, promote=True)
    expected = units * beds * days * 24
    have = Prediction.objects.filter(model_version=version).count()
    if have != expected:
        if have:
            raise SystemExit(
                f"{db_name} holds {have} scores, not {expected}: drop the database and run again."
            )
        seeded = time.perf_counter()
        year_seed(version, units=units, beds=beds, days=days, start=start)
        seconds = time.perf_counter() - seeded
        print(f"   seeded {expected:,} scores (+ explanations, alerts, actions) in {seconds:.0f} s")
    filled = time.perf_counter()
    if rows := aggregates_backfill(version):
        print(f"   cohort SHAP aggregates filled from the seeded explanations (setup): {rows:,} rows "
              f"in {time.perf_counter() - filled:.1f} s")  # fmt: skip
    return version


def _summary_cold(version, start, end) -> None:
    """The Celery task's time to compute the year's summary with nothing cached."""
    from monitoring import services

    comparison = services.Comparison(version_id=version.pk, start=start, end=end)
    services.summary_invalidate(comparison=comparison)
    started = time.perf_counter()
    summary = services.summary_compute(comparison=comparison)
    cold = time.perf_counter() - started
    print(f"   Celery task, year summary computed from the database (cold): {cold:.2f} s, "
          f"{summary['n_current']:,} scores streamed; peak RSS {_peak_mb():.0f} MB")  # fmt: skip


def _dashboard_timings(version, start, end) -> list[float]:
    """Seconds of each of 5 loads of the dashboard page and its five chart-data views, as an admin."""
    from django.test import Client, override_settings

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
    return timings


def part_two(bundle_dir: Path, *, units: int, beds: int, days: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sightline.settings")
    os.environ["MODEL_STORE"] = str(Path(tempfile.gettempdir()) / "sightline_bench_drift_store")
    import django

    django.setup()
    from datetime import UTC, datetime

    from django.conf import settings
    from django.core.cache import cache
    from django.db import connection

    db_name = connection.settings_dict["NAME"]
    print(f"\n2. A year of hourly scores on {units} units ({beds} bed(s) each), database {db_name}, "
          "synthetic rows")  # fmt: skip
    start = datetime(2025, 1, 1, tzinfo=UTC)
    version = _version_seeded(bundle_dir, units=units, beds=beds, days=days, start=start, db_name=db_name)
    end = start.replace(year=start.year + 1)
    _summary_cold(version, start, end)
    timings = _dashboard_timings(version, start, end)
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
    database_ensure(os.environ["DATABASE_URL"].rsplit("/", 1)[-1])
    part_two(bundle_dir, units=args.units, beds=args.beds, days=args.days)


if __name__ == "__main__":
    main()
