"""Scoring-service tokens: `Authorization: Token <key>`; only the key's sha256 is stored."""

import secrets

from django.utils import timezone
from drf_spectacular.authentication import SessionScheme
from rest_framework import authentication, exceptions

from .models import ServiceToken
from .permissions import TOKEN_SCOPES_ATTR
from .principals import ServicePrincipal
from .tokens import api_token_authenticate, hash_key


def service_token_create(*, name: str) -> tuple[ServiceToken, str]:
    """Create a token and return it with its key; the key is shown once and never stored."""
    key = secrets.token_urlsafe(32)
    token = ServiceToken.objects.create(name=name, key_hash=hash_key(key), prefix=key[:8])
    return token, key


class ServiceTokenAuthentication(authentication.TokenAuthentication):
    keyword = "Token"

    def authenticate_credentials(self, key: str):
        token = ServiceToken.objects.filter(key_hash=hash_key(key), is_active=True).first()
        if token is None:
            # Not a service token: an admin's API token (accounts.tokens) authenticates as that
            # person, never as a service.
            api_token = api_token_authenticate(key_hash=hash_key(key))
            if api_token is None:
                raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
            # The token's scopes bound what its user may do in this request (accounts.permissions).
            setattr(api_token.user, TOKEN_SCOPES_ATTR, tuple(api_token.scopes))
            return api_token.user, api_token
        ServiceToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return ServicePrincipal(token=token), token


class SessionLoginAuthentication(authentication.SessionAuthentication):
    """DRF's session authentication, answering an anonymous caller 401 (as the contract says) with
    a WWW-Authenticate header naming the login page, not 403: DRF sends 403 when its first
    authenticator has no challenge to offer."""

    def authenticate_header(self, request) -> str:
        return 'Session realm="sightline", login="/login/"'


class SessionLoginScheme(SessionScheme):
    """The OpenAPI docs describe SessionLoginAuthentication as the session cookie it is."""

    target_class = SessionLoginAuthentication
