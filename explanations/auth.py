"""Scoring-service tokens: `Authorization: Token <key>`; only the key's sha256 is stored."""

import hashlib
import secrets
from dataclasses import dataclass

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from .models import ServiceToken


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def service_token_create(*, name: str) -> tuple[ServiceToken, str]:
    """Create a token and return it with its key; the key is shown once and never stored."""
    key = secrets.token_urlsafe(32)
    token = ServiceToken.objects.create(name=name, key_hash=hash_key(key), prefix=key[:8])
    return token, key


@dataclass
class ServicePrincipal:
    """request.user for a scoring service: authenticated, but no person and no patient access."""

    token: ServiceToken
    is_authenticated: bool = True
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False

    @property
    def username(self) -> str:
        return f"service:{self.token.name}"

    def __str__(self) -> str:
        return self.username


class ServiceTokenAuthentication(authentication.TokenAuthentication):
    keyword = "Token"

    def authenticate_credentials(self, key: str):
        token = ServiceToken.objects.filter(key_hash=hash_key(key), is_active=True).first()
        if token is None:
            # Not a service token: an admin's API token (models_registry.tokens) authenticates as
            # that person, never as a service.
            from models_registry.tokens import api_token_authenticate

            api_token = api_token_authenticate(key_hash=hash_key(key))
            if api_token is None:
                raise exceptions.AuthenticationFailed("Invalid or revoked token.")
            return api_token.user, api_token
        ServiceToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return ServicePrincipal(token=token), token


class IsServiceToken(permissions.BasePermission):
    message = "This endpoint takes a scoring-service token (Authorization: Token ...)."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, ServicePrincipal)
