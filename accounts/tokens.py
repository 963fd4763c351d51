"""Personal API tokens: `Authorization: Token <key>` authenticating as a person (an admin), so that
a training job can `POST /api/v1/models/` without a browser session. Only the key's sha256 is
stored. A token has scopes (accounts.permissions.API_TOKEN_SCOPES), an expiry, and the role its
user had when it was issued: it stops working when it expires, is revoked, or that role changes.

Scoring-service tokens (accounts.auth) use the same header; accounts.auth looks a key up
among service tokens first and then here.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from .models import ApiToken
from .permissions import API_TOKEN_SCOPES, may_hold_api_token, may_use_api_token, user_role


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiTokenRefused(Exception):
    """The token cannot be issued: the user may not hold one, an unknown scope, a bad expiry."""


def _max_days() -> int:
    return int(getattr(settings, "API_TOKEN_MAX_DAYS", 365))


def _expiry(expires_at: datetime | None) -> datetime:
    now = timezone.now()
    if expires_at is None:
        return now + timedelta(days=int(getattr(settings, "API_TOKEN_DEFAULT_DAYS", 90)))
    if expires_at <= now:
        raise ApiTokenRefused("The expiry must be in the future.")
    if expires_at > now + timedelta(days=_max_days()):
        raise ApiTokenRefused(f"A token may last at most {_max_days()} days (API_TOKEN_MAX_DAYS).")
    return expires_at


def api_token_create(
    *, user, name: str = "", scopes: Iterable[str] | None = None, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a token for an admin and return it with its key; the key is shown once, never stored.

    Without `scopes` the token has every scope; without `expires_at` it lasts
    API_TOKEN_DEFAULT_DAYS (90), and never longer than API_TOKEN_MAX_DAYS (365)."""
    if not user.is_active:
        raise ApiTokenRefused(f"User '{user.get_username()}' is inactive.")
    if not may_hold_api_token(user):
        raise ApiTokenRefused(
            f"User '{user.get_username()}' is not an admin; API tokens are issued to admins only."
        )
    chosen = list(dict.fromkeys(scopes)) if scopes is not None else list(API_TOKEN_SCOPES)
    unknown = [s for s in chosen if s not in API_TOKEN_SCOPES]
    if unknown or not chosen:
        problem = f"Unknown scope {unknown[0]!r}" if unknown else "No scope given"
        raise ApiTokenRefused(f"{problem}: use one or more of {', '.join(API_TOKEN_SCOPES)}.")
    key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name.strip(),
        key_hash=hash_key(key),
        prefix=key[:8],
        scopes=chosen,
        issued_role=user_role(user) or "",
        expires_at=_expiry(expires_at),
    )
    return token, key


def api_token_authenticate(*, key_hash: str) -> ApiToken | None:
    """The token with this key hash if it is active, unexpired and its user still has the role it
    was issued under, else None; records the use. A token whose user's role changed is revoked."""
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("user", "user__profile")
        .filter(key_hash=key_hash, is_active=True, user__is_active=True, expires_at__gt=now)
        .first()
    )
    if token is None:
        return None
    if not may_use_api_token(token.user, issued_role=token.issued_role):
        api_tokens_revoke(user=token.user, reason="the user's role changed")
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def api_token_revoke(*, token: ApiToken, reason: str = "revoked") -> bool:
    """Revoke the token, recording when and why (who revoked it goes in `reason`); False if it
    was already revoked (its first revocation is kept)."""
    now = timezone.now()
    changed = ApiToken.objects.filter(pk=token.pk, is_active=True).update(
        is_active=False, revoked_reason=reason[:200], revoked_at=now
    )
    token.refresh_from_db(fields=["is_active", "revoked_reason", "revoked_at"])
    return bool(changed)


def api_tokens_revoke(*, user, reason: str) -> int:
    """Revoke every active token of this user (e.g. when their role changes); how many."""
    return ApiToken.objects.filter(user=user, is_active=True).update(
        is_active=False, revoked_reason=reason[:200], revoked_at=timezone.now()
    )


def api_token_state(token: ApiToken) -> str:
    """ "active", "expired" or "revoked <when>: <reason>", as the command and the admin show it."""
    if not token.is_active:
        when = f" {token.revoked_at:%Y-%m-%d %H:%M} UTC" if token.revoked_at else ""
        return f"revoked{when}: {token.revoked_reason or 'no reason recorded'}"
    if token.expires_at is not None and token.expires_at <= timezone.now():
        return "expired"
    return "active"
