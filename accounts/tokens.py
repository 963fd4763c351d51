"""Admin API tokens: `Authorization: Token <key>` authenticating as a person (an admin), so that a
training job can `POST /api/v1/models/` without a browser session. Only the key's sha256 is stored.

Scoring-service tokens (accounts.auth) use the same header; accounts.auth looks a key up
among service tokens first and then here.
"""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone

from .models import ApiToken
from .permissions import may_hold_api_token


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiTokenRefused(Exception):
    """The user may not hold an API token (not an admin, or inactive)."""


def api_token_create(*, user, name: str = "") -> tuple[ApiToken, str]:
    """Create a token for an admin and return it with its key; the key is shown once, never stored."""
    if not user.is_active:
        raise ApiTokenRefused(f"User '{user.get_username()}' is inactive.")
    if not may_hold_api_token(user):
        raise ApiTokenRefused(
            f"User '{user.get_username()}' is not an admin; API tokens are issued to admins only."
        )
    key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name.strip(), key_hash=hash_key(key), prefix=key[:8])
    return token, key


def api_token_authenticate(*, key_hash: str):
    """The active user behind an active token with this key hash, or None; records the use."""
    token = (
        ApiToken.objects.select_related("user", "user__profile")
        .filter(key_hash=key_hash, is_active=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    token.is_active = False
    token.save(update_fields=["is_active"])
    return token
