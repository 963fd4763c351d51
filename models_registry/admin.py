from django.contrib import admin

from models_registry.models import ModelFeature, ModelVersion, RegisteredModel


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    fields = ("version", "status", "model_format", "registered_at", "promoted_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ("name", "outcome", "horizon_hours", "created_at")
    search_fields = ("name",)
    readonly_fields = ("created_at",)
    inlines = [ModelVersionInline]


class ModelFeatureInline(admin.TabularInline):
    model = ModelFeature
    fields = (
        "position",
        "name",
        "label",
        "unit",
        "source",
        "code",
        "kind",
        "categories",
        "range_min",
        "range_max",
        "decision_time",
        "mutable",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Versions are created by register_model and promoted by the promote action; the verified
    artifacts, their hashes and the registration checks are never edited here."""

    list_display = ("registered_model", "version", "status", "model_format", "registered_at", "promoted_at")
    list_filter = ("status", "registered_model")
    readonly_fields = (
        "registered_model",
        "version",
        "status",
        "model_format",
        "spec",
        "tier_high",
        "tier_medium",
        "artifacts",
        "bundle_sha256",
        "background_description",
        "background_size",
        "reference_size",
        "checks",
        "registered_at",
        "registered_by",
        "promoted_at",
        "promoted_by",
    )
    inlines = [ModelFeatureInline]
    actions = ["promote"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Promote the selected version to production")
    def promote(self, request, queryset):
        from models_registry.services import model_version_promote

        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to promote.", level="error")
            return
        version = queryset.get()
        model_version_promote(version=version, user=request.user)
        self.message_user(request, f"{version} is now production.")
