"""What the Django admin may do with records that are written only by their own services (the
append-only clinical and audit records, tokens, promotions): list and view them, never add, change
or delete them there."""


class ReadOnlyAdminMixin:
    """Put before admin.ModelAdmin in the bases: no add, change or delete in the admin."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
