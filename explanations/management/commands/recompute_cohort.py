"""Recompute a model version's cohort SHAP aggregates as a chunked Celery job, with progress."""

import time

from django.core.management.base import BaseCommand, CommandError

from explanations.models import CohortJob
from explanations.services import cohort_job_create, cohort_job_progress, cohort_job_run
from models_registry.selectors import version_lookup


class Command(BaseCommand):
    help = (
        "Recompute the cohort SHAP aggregates of a model version in chunks of predictions (a Celery "
        "group; progress at GET /api/v1/jobs/<id>/). --resume JOB re-dispatches only the chunks of "
        "an interrupted job that are not done."
    )

    # --version names the model version here, replacing Django's own --version.
    suppressed_base_arguments = {"--version"}

    def create_parser(self, prog_name, subcommand, **kwargs):
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--model", help="registered model name")
        parser.add_argument("--version", type=int, help="version number (default: the production one)")
        parser.add_argument("--chunk-size", type=int, default=None, help="predictions per chunk task")
        parser.add_argument(
            "--resume", type=int, metavar="JOB", help="resume this job instead of starting one"
        )
        parser.add_argument("--wait", action="store_true", help="print progress until the job is done")

    def handle(self, *args, **options):
        if options["resume"]:
            job = CohortJob.objects.filter(pk=options["resume"]).first()
            if job is None:
                raise CommandError(f"No cohort job {options['resume']}.")
        else:
            if not options["model"]:
                raise CommandError("--model NAME is required (or --resume JOB).")
            version = version_lookup(name=options["model"], version=options["version"] or None)
            if version is None:
                raise CommandError(
                    f"No such model version: {options['model']} {options['version'] or '(production)'}."
                )
            job = cohort_job_create(version=version, chunk_size=options["chunk_size"])
            self.stdout.write(
                f"cohort job {job.pk}: {job.rows_total} predictions of {version} "
                f"in {job.chunks_total} chunk(s)"
            )
        dispatched = cohort_job_run(job=job)
        self.stdout.write(
            f"cohort job {job.pk}: {dispatched} chunk(s) dispatched; progress at /api/v1/jobs/{job.pk}/"
        )
        if not options["wait"]:
            return
        while True:
            job.refresh_from_db()
            progress = cohort_job_progress(job)
            self.stdout.write(
                f"  {progress['status']}: {progress['chunks_done']}/{progress['chunks_total']} chunks, "
                f"{progress['rows_done']} rows"
            )
            if job.status in (CohortJob.Status.DONE, CohortJob.Status.FAILED):
                break
            time.sleep(2)
        if job.status == CohortJob.Status.FAILED:
            raise CommandError(f"cohort job {job.pk} failed: {job.error}")
