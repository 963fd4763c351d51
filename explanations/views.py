"""The progress page of a cohort recompute job, and resuming a failed one (admins only: the same
rule, accounts.permissions.may_run_cohort_jobs, as the job API)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.permissions import may_run_cohort_jobs
from explanations.models import CohortJob
from explanations.services import cohort_job_progress, cohort_job_run

# The job page polls `GET /api/v1/jobs/<id>/` this often (milliseconds) until the job ends.
JOB_POLL_MS = 2000
JOB_ENDED = ("done", "failed")


def job_progress_text(progress: dict) -> str:
    """ "12 of 35 chunks, 12,000 of 34,571 rows" (job.js writes the same words)."""
    return (
        f"{progress['chunks_done']:,} of {progress['chunks_total']:,} chunks, "
        f"{progress['rows_done']:,} of {progress['rows_total']:,} rows"
    )


def _job_get(request: HttpRequest, job_id: int) -> CohortJob:
    if not may_run_cohort_jobs(request.user):
        raise PermissionDenied("Cohort recompute jobs are for admins.")
    job = CohortJob.objects.select_related("version__registered_model").filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    return job


@login_required
@require_GET
def job_page(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _job_get(request, job_id)
    progress = cohort_job_progress(job)
    context = {
        "job": job,
        "progress": progress,
        "progress_text": job_progress_text(progress),
        "ended": progress["status"] in JOB_ENDED,
        "poll_ms": JOB_POLL_MS,
    }
    return render(request, "explanations/job.html", context)


@login_required
@require_POST
def job_resume(request: HttpRequest, job_id: int) -> HttpResponse:
    """Resume a failed job: its chunks not done are dispatched again (the done ones are kept)."""
    job = _job_get(request, job_id)
    if job.status != CohortJob.Status.FAILED:
        messages.error(request, f"Only a failed job is resumed; this one is {job.status}.")
    else:
        dispatched = cohort_job_run(job=job)
        messages.success(request, f"Job {job.pk} resumed: {dispatched:,} chunk(s) not done dispatched again.")
    return redirect("job-progress", job_id=job.pk)
