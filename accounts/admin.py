from django.contrib import admin

from .models import ServiceToken


@admin.register(ServiceToken)
class ServiceTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active"]
    # The key is never stored; only its hash, which is of no use to show.
    exclude = ["key_hash"]
    readonly_fields = ["name", "prefix", "created_at", "last_used_at"]

    def has_add_permission(self, request) -> bool:
        return False  # tokens are created with `manage.py create_service_token`, which prints the key once
