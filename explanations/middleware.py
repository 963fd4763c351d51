"""A database outage answers API clients 503 JSON (retry later), not an HTML 500."""

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse

from sightline.api_errors import error_body

log = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        if not request.path.startswith(("/api/", "/fhir/", "/cds-services")):
            return None
        log.error("database unavailable on %s: %s", request.path, exception)
        response = JsonResponse(
            error_body(
                "service_unavailable",
                "The database is unavailable; nothing was stored. Retry the same request later.",
            ),
            status=503,
        )
        response["Retry-After"] = "30"
        return response
