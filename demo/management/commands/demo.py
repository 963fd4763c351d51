"""python manage.py demo: everything `make demo` does before it serves the app."""

import os
import secrets
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from demo.census import BEDS, census_payloads
from demo.models import demo_clock
from explanations.models import Explanation
from explanations.services.ingest import prediction_ingest_many
from models_registry.services import model_register
from monitoring.refresh import defaults_refresh

CHUNK = 100
DEMO_USERS = (
    # username, role, units
    ("clinician", "clinician", "MICU,CCU"),
    ("admin", "admin", ""),
)


class Command(BaseCommand):
    help = (
        "Load the RHC demo: train the demo model (once), register and promote it, ingest the demo "
        "census (simulated beds, stays, times and sources around real RHC values), wait for its "
        "explanations, and create a demo clinician (MICU, CCU) and admin, printing their passwords. "
        "Safe to run again: nothing is created twice."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--bundle-dir",
            type=Path,
            default=settings.BASE_DIR / "var" / "demo_bundle",
            help="Where the demo bundle is written (trained only if it is not there yet).",
        )
        parser.add_argument("--limit", type=int, help="Ingest only the first N scores of the census.")
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="Where the app will be served (for the summary)."
        )
        parser.add_argument(
            "--wait",
            type=int,
            default=900,
            help="Seconds to wait for the Celery worker to finish the explanations (default 900).",
        )

    def handle(self, *args, bundle_dir: Path, limit: int | None, wait: int, url: str, **options) -> None:
        if not (bundle_dir / "bundle.yaml").exists():
            self.stdout.write("Training the demo model on the RHC cohort...")
            call_command("train_demo_model", str(bundle_dir), stdout=self.stdout)
        version, created = model_register(path=bundle_dir, promote=True)
        state = "registered" if created else "already registered"
        self.stdout.write(
            f"Model {version.registered_model.name} version {version.version} {state} (production)."
        )

        clock = demo_clock(timezone.now())
        payloads = list(
            census_payloads(model_name=version.registered_model.name, clock=clock.anchored_at, limit=limit)
        )
        for payload in payloads:
            payload["model_version"] = version.version
        mode = "in this process" if settings.CELERY_TASK_ALWAYS_EAGER else "by the Celery worker"
        patients = len({p["patient"]["id"] for p in payloads})
        self.stdout.write(
            f"Ingesting the demo census up to {clock.anchored_at:%Y-%m-%d %H:%M} UTC (its clock, set on the "
            f"first run): {len(payloads)} scores of {patients} patients (explained {mode})."
        )
        stored = replayed = 0
        with tqdm(total=len(payloads), desc="Ingest", unit="score") as bar:
            for start in range(0, len(payloads), CHUNK):
                results = prediction_ingest_many(
                    payloads=payloads[start : start + CHUNK], source="bulk", simulated=True
                )
                for result in results:
                    if isinstance(result, Exception):
                        raise CommandError(f"The demo scoring run was rejected: {result.detail}")
                    stored += result.created
                    replayed += not result.created
                bar.update(len(results))
        self.stdout.write(f"{stored} predictions stored, {replayed} already there.")

        self._wait_for_explanations(version, wait)
        self._warm_monitoring(version)
        users = self._create_users()
        self._summary(version, url, users, patients=patients)

    def _wait_for_explanations(self, version, wait: int) -> None:
        explanations = Explanation.objects.filter(prediction__model_version=version)
        total = explanations.count()
        deadline = time.monotonic() + wait
        with tqdm(total=total, desc="Explanations", unit="patient") as bar:
            while True:
                done = explanations.filter(
                    status__in=[Explanation.Status.READY, Explanation.Status.FAILED]
                ).count()
                bar.update(done - bar.n)
                if done == total:
                    break
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"{total - done} explanations still pending after {wait} s: "
                        "is a Celery worker running "
                        "(celery -A sightline worker)?"
                    )
                time.sleep(1)
        failed = explanations.filter(status=Explanation.Status.FAILED).count()
        if failed:
            self.stderr.write(self.style.WARNING(f"{failed} explanations failed; their pages say why."))

    def _warm_monitoring(self, version) -> None:
        """Compute the default monitoring summaries and the page's subgroup view now, so the
        dashboard's first view reads them. With tasks in-process nothing computes them when scores
        arrive; with a worker its debounced refresh comes MONITORING_REFRESH_DEBOUNCE_SECONDS after
        the first score, after `make demo` has started serving."""
        started = time.monotonic()
        n = defaults_refresh(version_id=version.pk)
        self.stdout.write(f"Monitoring summaries computed: {n} ({time.monotonic() - started:.0f} s).")

    def _create_users(self) -> list[tuple[str, str, str, str]]:
        """(role, username, password, units) of each demo user, created or updated in place."""
        users = []
        for username, role, units in DEMO_USERS:
            password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(9)
            os.environ["SIGHTLINE_DEMO_USER_PASSWORD"] = password
            arguments = [username, "--role", role, "--password-from-env", "SIGHTLINE_DEMO_USER_PASSWORD"]
            if units:
                arguments += ["--units", units]
            call_command("create_user", *arguments, stdout=open(os.devnull, "w"))  # noqa: SIM115
            users.append((role, username, password, units.replace(",", ", ") if units else "every unit"))
        del os.environ["SIGHTLINE_DEMO_USER_PASSWORD"]
        return users

    def _summary(self, version, url: str, users: list[tuple[str, str, str, str]], *, patients: int) -> None:
        """What a newcomer needs at the end of the run: what was loaded, where, and who can sign in."""
        explanations = Explanation.objects.filter(prediction__model_version=version)
        ready = explanations.filter(status=Explanation.Status.READY).count()
        failed = explanations.filter(status=Explanation.Status.FAILED).count()
        write = self.stdout.write
        write("")
        write(self.style.SUCCESS("Sightline demo ready"))
        write(f"  Open        {url}/")
        write(f"  Model       {version.registered_model.name} v{version.version} (production)")
        beds = ", ".join(f"{unit} {n}" for unit, n in BEDS.items())
        write(
            f"  Patients    {patients} from the RHC study (real day-1 values), "
            f"{sum(BEDS.values())} beds ({beds})"
        )
        write(f"  Scores      {explanations.count()}, {ready} explained, {failed} failed")
        write(
            "  Simulated   stays, beds, names, admission and observation times, source records, and the "
            "monitor values of every score but the day-1 one (labelled so)"
        )
        write("  Sign in as  (passwords are new on every run; set DEMO_PASSWORD to fix them)")
        write(f"    {'role':<10} {'username':<10} {'password':<14} units")
        for role, username, password, units in users:
            write(f"    {role:<10} {username:<10} {password:<14} {units}")
