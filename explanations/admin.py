from django.contrib import admin

from .models import Alert, Encounter, Explanation, Outcome, Patient, Prediction, ServiceToken


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


@admin.register(Explanation)
class ExplanationAdmin(admin.ModelAdmin):
    list_display = ["prediction", "status", "attempts", "additivity_error", "queued_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in Explanation._meta.fields]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["pk", "patient", "unit", "tier", "risk", "state", "created_at"]
    list_filter = ["tier", "unit", "state"]
    raw_id_fields = ["prediction", "patient"]


@admin.register(Outcome)
class OutcomeAdmin(admin.ModelAdmin):
    list_display = ["encounter", "outcome", "occurred_at", "received_at"]
    raw_id_fields = ["encounter"]


@admin.register(ServiceToken)
class ServiceTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active"]
    # The key is never stored; only its hash, which is of no use to show.
    exclude = ["key_hash"]
    readonly_fields = ["name", "prefix", "created_at", "last_used_at"]

    def has_add_permission(self, request) -> bool:
        return False  # tokens are created with `manage.py create_service_token`, which prints the key once
