"""The clinical record in the Django admin: read-only, and every look at it audited.

Patients, encounters, predictions, alerts and outcomes are what the scoring service posted and what
clinicians acted on; clinicians' actions and the audit log are append-only records
(common.models.AppendOnlyModel) that outcome studies and auditors depend on. The admin offers no
add, change, delete or bulk action on any of them, whatever the user's permissions (a superuser
once moved an alert between units here), and each list or record shown writes an audit record:
which record, or which query and how many rows.
"""

from django.contrib import admin

from accounts import permissions
from common.admin_mixins import ReadOnlyAdminMixin

from . import access
from .models import Alert, AlertAction, AuditEvent, Encounter, Outcome, Patient, Prediction


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """No add, change, delete or actions; each changelist and record view is audited."""

    actions = None

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def audited_patient(self, obj) -> Patient | None:
        """The patient a record belongs to (overridden per model)."""
        return getattr(obj, "patient", None)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            shown = [self.audited_patient(obj) for obj in changelist.result_list]
            access.audit_list(
                request,
                action=f"admin_list_{self.model._meta.model_name}"[:50],
                patients=[patient for patient in shown if patient is not None],
                rows=len(changelist.result_list),
                note=f"{len(changelist.result_list)} of {changelist.result_count} rows",
            )
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        obj = getattr(response, "context_data", {}).get("original")
        if obj is not None:
            access.audit_view(
                request,
                action=f"admin_view_{self.model._meta.model_name}"[:50],
                patient=self.audited_patient(obj),
                prediction=obj if isinstance(obj, Prediction) else getattr(obj, "prediction", None),
            )
        return response


class AppendOnlyAdmin(ReadOnlyAdmin):
    def has_view_permission(self, request, obj=None) -> bool:
        return permissions.may_read_audit(request.user) or super().has_view_permission(request, obj)


@admin.register(AlertAction)
class AlertActionAdmin(AppendOnlyAdmin):
    list_display = ["acted_at", "alert", "user", "role", "action", "reason", "seconds_to_decision"]
    list_filter = ["action", "role"]
    search_fields = ["user__username", "alert__patient__external_id"]
    list_select_related = ["alert__patient", "user"]

    def audited_patient(self, obj) -> Patient:
        return obj.alert.patient


@admin.register(AuditEvent)
class AuditEventAdmin(AppendOnlyAdmin):
    list_display = ["at", "user", "action", "patient", "path", "ip"]
    list_filter = ["action"]
    search_fields = ["user__username", "patient__external_id", "path"]
    list_select_related = ["user", "patient"]


@admin.register(Patient)
class PatientAdmin(ReadOnlyAdmin):
    list_display = ["external_id", "display_name", "unit", "bed", "simulated", "updated_at"]
    list_filter = ["unit", "simulated"]
    search_fields = ["external_id", "display_name"]

    def audited_patient(self, obj) -> Patient:
        return obj


@admin.register(Encounter)
class EncounterAdmin(ReadOnlyAdmin):
    list_display = ["external_id", "patient"]
    search_fields = ["external_id", "patient__external_id"]
    list_select_related = ["patient"]


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ["external_id", "model_version", "patient", "unit", "risk", "tier", "scored_at", "source"]
    list_filter = ["tier", "unit", "source", "simulated"]
    search_fields = ["external_id", "patient__external_id"]
    list_select_related = ["patient", "model_version__registered_model"]


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["pk", "patient", "unit", "tier", "risk", "state", "created_at"]
    list_filter = ["tier", "unit", "state"]
    list_select_related = ["patient"]


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyAdmin):
    list_display = ["encounter", "outcome", "occurred_at", "received_at"]
    list_select_related = ["encounter__patient"]

    def audited_patient(self, obj) -> Patient:
        return obj.encounter.patient
