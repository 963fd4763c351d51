from django.contrib import admin, messages

from common.admin_mixins import ReadOnlyAdminMixin

from . import permissions
from .models import ApiToken, ServiceToken
from .tokens import api_token_revoke, api_token_state


@admin.register(ServiceToken)
class ServiceTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active"]
    # The key is never stored; only its hash, which is of no use to show.
    exclude = ["key_hash"]
    readonly_fields = ["name", "prefix", "created_at", "last_used_at"]

    def has_add_permission(self, request) -> bool:
        return False  # tokens are created with `manage.py create_service_token`, which prints the key once


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Personal API tokens, read only: listed, and revoked with the action (when and by whom is
    kept with the token). They are created with `manage.py create_api_token`, which prints the key
    once, and never deleted."""

    list_display = [
        "id",
        "prefix",
        "user",
        "name",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
        "state",
    ]
    list_filter = ["is_active"]
    search_fields = ["user__username", "prefix", "name"]
    exclude = ["key_hash"]
    actions = ["revoke"]

    @admin.display(description="State")
    def state(self, token: ApiToken) -> str:
        return api_token_state(token)

    @admin.action(description="Revoke the selected API tokens")
    def revoke(self, request, queryset) -> None:
        reason = f"revoked by {request.user.get_username()} in the Django admin"
        revoked = sum(api_token_revoke(token=token, reason=reason) for token in queryset)
        self.message_user(request, f"Revoked {revoked} API token(s).", messages.SUCCESS)

    def has_module_permission(self, request) -> bool:
        return permissions.may_use_django_admin(request.user) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return permissions.may_use_django_admin(request.user) or super().has_view_permission(request, obj)
