"""Clinicians' actions and the audit log in the Django admin: readable by admins, never changed.

Both are append-only records (clinician_ui.models.AppendOnlyModel) that outcome studies and
auditors depend on, so the admin offers no add, change or delete, whatever the user's permissions.
"""

from django.contrib import admin

from . import access
from .models import AlertAction, AuditEvent


class AppendOnlyAdmin(admin.ModelAdmin):
    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_view_permission(self, request, obj=None) -> bool:
        return access.may_read_audit(request.user) or super().has_view_permission(request, obj)

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
