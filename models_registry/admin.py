from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from accounts.permissions import may_manage_registry
from common.admin_mixins import ReadOnlyAdminMixin
from models_registry.bundle import BundleError
from models_registry.models import ModelFeature, ModelVersion, Promotion, RegisteredModel
from models_registry.services import (
    MIN_OVERRIDE_REASON_CHARS,
    PromotionRefused,
    model_register_upload,
    model_version_promote,
)


class BundleUploadForm(forms.Form):
    bundle = forms.FileField(help_text="A .zip of a model bundle (CONTRACT.md section 1).")
    promote = forms.BooleanField(
        required=False, help_text="Make it production if it clears the promotion gate."
    )
    override_reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Only to promote although the gate fails: why (kept in the promotion audit).",
    )


class PromotionOverrideForm(forms.Form):
    override_reason = forms.CharField(
        min_length=MIN_OVERRIDE_REASON_CHARS,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        label="Why is the gate overridden?",
        help_text=f"At least {MIN_OVERRIDE_REASON_CHARS} characters; kept in the promotion audit.",
    )


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
    change_list_template = "admin/models_registry/registeredmodel/change_list.html"

    def get_urls(self):
        return [
            path("upload/", self.admin_site.admin_view(self.upload_view), name="models_registry_upload"),
            *super().get_urls(),
        ]

    def upload_view(self, request):
        """Register (and optionally promote) an uploaded bundle zip; admins only."""
        if not may_manage_registry(request.user):
            raise PermissionDenied
        form = BundleUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                version, created = model_register_upload(
                    upload=form.cleaned_data["bundle"],
                    promote=form.cleaned_data["promote"],
                    user=request.user,
                    override_reason=form.cleaned_data["override_reason"] or None,
                )
            except (BundleError, PromotionRefused) as exc:
                form.add_error("bundle" if isinstance(exc, BundleError) else "promote", str(exc))
            else:
                verb = "Registered" if created else "Already registered"
                self.message_user(request, f"{verb} {version} ({version.status}).", messages.SUCCESS)
                return redirect(reverse("admin:models_registry_modelversion_change", args=[version.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Upload a model bundle",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/models_registry/upload.html", context)


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
        "metrics",
        "gate",
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
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to promote.", level="error")
            return
        version = queryset.get()
        override = bool((version.gate or {}).get("passed")) is False
        form = PromotionOverrideForm(request.POST if "confirm_override" in request.POST else None)
        if override and not form.is_valid():
            # The gate fails: an intermediate page asks for the written reason (audited).
            if not may_manage_registry(request.user):
                self.message_user(request, "Only an admin may override the promotion gate.", level="error")
                return None
            context = {
                **self.admin_site.each_context(request),
                "title": f"Override the promotion gate for {version}",
                "version": version,
                "form": form,
                "opts": self.model._meta,
            }
            return TemplateResponse(request, "admin/models_registry/promote_override.html", context)
        try:
            model_version_promote(
                version=version,
                user=request.user,
                override_reason=form.cleaned_data["override_reason"] if override else None,
            )
        except PromotionRefused as exc:
            self.message_user(request, str(exc), level="error")
            return None
        how = " (gate overridden; the reason is in the promotion audit)" if override else ""
        self.message_user(request, f"{version} is now production{how}.")
        return None


@admin.register(Promotion)
class PromotionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The promotion audit: read-only, never edited or deleted."""

    list_display = ("version", "promoted_at", "user", "gate_passed", "overridden")
    list_filter = ("overridden", "gate_passed")
    readonly_fields = (
        "version",
        "user",
        "promoted_at",
        "gate_passed",
        "overridden",
        "override_reason",
        "gate",
    )
