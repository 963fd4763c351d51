"""Who a user is to Sightline (role and units) and the tokens machines authenticate with.

Role decisions are made in accounts.permissions, never by reading these fields elsewhere.
"""

from django.conf import settings
from django.db import models


class Profile(models.Model):
    class Role(models.TextChoices):
        CLINICIAN = "clinician"
        ADMIN = "admin"
        AUDITOR = "auditor"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    role = models.CharField(max_length=12, choices=Role.choices, default=Role.CLINICIAN)
    # Unit codes a clinician is assigned to; admins and auditors see every unit.
    units = models.JSONField(default=list, blank=True)

    class Meta:
        db_table = "clinician_ui_profile"

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"


class ServiceToken(models.Model):
    """A scoring service's API token. Only its sha256 is stored; it may ingest and nothing else."""

    name = models.CharField(max_length=100, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "explanations_servicetoken"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ApiToken(models.Model):
    """A personal API token of an admin (`Authorization: Token <key>`), e.g. for a training job's
    `POST /api/v1/models/`. Authenticates as its user, within its scopes (accounts.permissions),
    until it expires, is revoked, or its user's role changes; only the key's sha256 is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    # The first characters of the key, so that an admin can tell tokens apart without the key.
    prefix = models.CharField(max_length=8)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    # What the token may be used for (accounts.permissions.API_TOKEN_SCOPES).
    scopes = models.JSONField(default=list)
    # The role its user had when it was issued: a token of a user whose role changed is void.
    issued_role = models.CharField(max_length=12, blank=True, default="")
    expires_at = models.DateTimeField(null=True)
    revoked_reason = models.CharField(max_length=200, blank=True, default="")
    # When it was revoked (revoke_api_token, the Django admin, a role change); its reason says by whom.
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "models_registry_apitoken"
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        return f"{self.user} token {self.prefix}… ({'active' if self.is_active else 'revoked'})"
