"""The EHR side in the Django admin.

Registered EHRs are changed only through ``manage.py register_ehr`` (audited), so the admin shows
them read-only, as it shows the seen-token table and the cards shown. Practitioner mappings and the
per-model low-tier setting are what admins manage here; every change of a mapping is audited, and a
mapping only names the person: it never changes their role (accounts.permissions decides that).
"""

from django import forms
from django.contrib import admin

from accounts import permissions
from patients import access
from patients.admin import ReadOnlyAdmin

from .models import CdsCard, CdsCardShown, CdsServiceSetting, PractitionerMapping, RegisteredEhr, SeenJti


@admin.register(RegisteredEhr)
class RegisteredEhrAdmin(ReadOnlyAdmin):
    list_display = ["iss", "name", "client_id", "jwks_url", "created_at", "revoked_at"]
    search_fields = ["iss", "name"]


@admin.register(SeenJti)
class SeenJtiAdmin(ReadOnlyAdmin):
    list_display = ["iss", "jti", "exp", "seen_at"]
    search_fields = ["iss", "jti"]


@admin.register(CdsCard)
class CdsCardAdmin(ReadOnlyAdmin):
    list_display = ["uuid", "service_id", "ehr", "alert", "first_shown_at"]
    list_select_related = ["ehr", "prediction__patient", "alert"]

    def audited_patient(self, obj):
        return obj.prediction.patient


@admin.register(CdsCardShown)
class CdsCardShownAdmin(ReadOnlyAdmin):
    list_display = ["card", "user", "hook_instance", "shown_at"]
    list_select_related = ["card__prediction__patient", "user"]

    def audited_patient(self, obj):
        return obj.card.prediction.patient


class AdminsOnly(admin.ModelAdmin):
    """Only Sightline admins (accounts.permissions) manage these, whatever Django permissions say."""

    def has_module_permission(self, request) -> bool:
        return permissions.is_admin(request.user)

    def has_view_permission(self, request, obj=None) -> bool:
        return permissions.is_admin(request.user)

    def has_add_permission(self, request) -> bool:
        return permissions.is_admin(request.user)

    def has_change_permission(self, request, obj=None) -> bool:
        return permissions.is_admin(request.user)

    def has_delete_permission(self, request, obj=None) -> bool:
        return permissions.is_admin(request.user)


class PractitionerMappingForm(forms.ModelForm):
    class Meta:
        model = PractitionerMapping
        fields = ["ehr", "fhir_user", "user"]

    def clean_user(self):
        user = self.cleaned_data["user"]
        if not permissions.may_act_through_ehr(user):
            raise forms.ValidationError(
                "Map EHR users to active clinician or auditor accounts only: nothing coming from an EHR "
                "may act as an admin."
            )
        return user


@admin.register(PractitionerMapping)
class PractitionerMappingAdmin(AdminsOnly):
    form = PractitionerMappingForm
    list_display = ["fhir_user", "ehr", "user", "created_at"]
    list_select_related = ["ehr", "user"]
    search_fields = ["fhir_user", "user__username"]
    actions = None  # no bulk delete: each change is audited one by one

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        access.audit_view(
            request,
            action="change_practitioner_mapping" if change else "add_practitioner_mapping",
            note=f"{obj.fhir_user} @ {obj.ehr.iss} -> {obj.user.username}",
        )

    def delete_model(self, request, obj) -> None:
        note = f"{obj.fhir_user} @ {obj.ehr.iss} -> {obj.user.username}"
        super().delete_model(request, obj)
        access.audit_view(request, action="delete_practitioner_mapping", note=note)


@admin.register(CdsServiceSetting)
class CdsServiceSettingAdmin(AdminsOnly):
    list_display = ["registered_model", "low_tier"]
    list_select_related = ["registered_model"]
