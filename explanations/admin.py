"""Explanations in the Django admin (read-only, audited), and the cohort recompute action on model versions:
the registry's version admin, extended here so that the registry knows nothing of cohort jobs."""

from django.contrib import admin, messages
from django.shortcuts import redirect

from accounts.permissions import may_run_cohort_jobs
from models_registry.admin import ModelVersionAdmin
from models_registry.models import ModelVersion
from patients.admin import ReadOnlyAdmin

from .models import Explanation
from .services import cohort_job_create, cohort_job_run


@admin.register(Explanation)
class ExplanationAdmin(ReadOnlyAdmin):
    """Explanations are computed by the worker: read-only here, and each look audited."""

    list_display = ["prediction", "status", "attempts", "additivity_error", "queued_at", "finished_at"]
    list_filter = ["status"]
    list_select_related = ["prediction__patient"]

    def audited_patient(self, obj):
        return obj.prediction.patient


class ModelVersionWithCohortAdmin(ModelVersionAdmin):
    actions = [*ModelVersionAdmin.actions, "recompute_cohort"]

    @admin.action(description="Recompute cohort SHAP (chunked Celery job)")
    def recompute_cohort(self, request, queryset):
        """Create a cohort recompute job for one version, dispatch its chunks and show its progress."""
        if queryset.count() != 1:
            self.message_user(
                request, "Select exactly one version to recompute its cohort SHAP.", level=messages.ERROR
            )
            return None
        if not may_run_cohort_jobs(request.user):
            self.message_user(request, "Only an admin may recompute cohort SHAP.", level=messages.ERROR)
            return None
        version = queryset.select_related("registered_model").get()
        job = cohort_job_create(version=version)
        dispatched = cohort_job_run(job=job)
        self.message_user(
            request,
            f"Cohort job {job.pk} for {version}: {job.rows_total:,} predictions in "
            f"{job.chunks_total:,} chunk(s), {dispatched:,} dispatched.",
        )
        return redirect("job-progress", job_id=job.pk)


admin.site.unregister(ModelVersion)
admin.site.register(ModelVersion, ModelVersionWithCohortAdmin)
