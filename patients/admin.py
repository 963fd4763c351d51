"""The clinical record in the Django admin.

Clinicians' actions and the audit log are append-only records (common.models.AppendOnlyModel) that
outcome studies and auditors depend on, so the admin offers no add, change or delete, whatever the
user's permissions.
"""

from django.contrib import admin

from accounts import permissions

from .models import Alert, AlertAction, AuditEvent, Encounter, Outcome, Patient, Prediction


class AppendOnlyAdmin(admin.ModelAdmin):
    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_view_permission(self, request, obj=None) -> bool:
        return permissions.may_read_audit(request.user) or super().has_view_permission(request, obj)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AlertAction)
class AlertActionAdmin(AppendOnlyAdmin):
    list_display = ["acted_at", "alert", "user", "role", "action", "reason", "seconds_to_decision"]
    list_filter = ["action", "role"]
    search_fields = ["user__username", "alert__patient__external_id"]
    list_select_related = ["alert", "user"]


@admin.register(AuditEvent)
class AuditEventAdmin(AppendOnlyAdmin):
    list_display = ["at", "user", "action", "patient", "path", "ip"]
    list_filter = ["action"]
    search_fields = ["user__username", "patient__external_id", "path"]
    list_select_related = ["user", "patient"]


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ["external_id", "display_name", "unit", "bed", "simulated", "updated_at"]
    list_filter = ["unit", "simulated"]
    search_fields = ["external_id", "display_name"]


@admin.register(Encounter)
class EncounterAdmin(admin.ModelAdmin):
    list_display = ["external_id", "patient"]
    search_fields = ["external_id", "patient__external_id"]
    raw_id_fields = ["patient"]


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["external_id", "model_version", "patient", "unit", "risk", "tier", "scored_at", "source"]
    list_filter = ["tier", "unit", "source", "simulated"]
    search_fields = ["external_id", "patient__external_id"]
    raw_id_fields = ["patient", "encounter", "model_version", "registered_model"]
    # Predictions are a record of what was scored: read-only here.
    readonly_fields = [f.name for f in Prediction._meta.fields]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["pk", "patient", "unit", "tier", "risk", "state", "created_at"]
    list_filter = ["tier", "unit", "state"]
    raw_id_fields = ["prediction", "patient"]


@admin.register(Outcome)
class OutcomeAdmin(admin.ModelAdmin):
    list_display = ["encounter", "outcome", "occurred_at", "received_at"]
    raw_id_fields = ["encounter"]
