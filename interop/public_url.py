"""Sightline's public address as the EHR reaches it (settings.CDS_PUBLIC_BASE_URL): the ``aud`` of CDS
Hooks tokens, the card links and the SMART redirect URI are built on it."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

NOT_CONFIGURED = (
    "CDS_PUBLIC_BASE_URL is not set: this Sightline does not know the address the EHR reaches it at, "
    "so it cannot check tokens or build links. An administrator sets it (see the README)."
)


def public_base_url(request: HttpRequest) -> str | None:
    """The configured base URL; outside production, without one, the request's own scheme and host
    (ALLOWED_HOSTS-checked). None in production without one: the caller answers 503."""
    if settings.CDS_PUBLIC_BASE_URL:
        return settings.CDS_PUBLIC_BASE_URL
    if settings.PRODUCTION:
        return None
    return f"{request.scheme}://{request.get_host()}"
