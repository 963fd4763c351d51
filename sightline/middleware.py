"""Request size limits for the API: a body over the limit is refused with 413 JSON before it is read."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse

from .api_errors import error_body

# The API, FHIR and the CDS Hooks service (a patient-view call may carry a prefetch).
LIMITED_PREFIXES = ("/api/", "/fhir/", "/cds-services/")


def body_limit(path: str) -> int:
    for prefix, limit in settings.API_BODY_LIMITS.items():
        if path.startswith(prefix):
            return limit
    return settings.API_BODY_LIMIT_DEFAULT


def too_large(limit: int) -> JsonResponse:
    return JsonResponse(
        error_body(
            "payload_too_large",
            f"The request body is larger than this endpoint accepts ({limit:,} bytes); nothing was stored. "
            "Send fewer items per request.",
        ),
        status=413,
    )


class ApiBodyLimitMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        if request.path.startswith(LIMITED_PREFIXES):
            limit = body_limit(request.path)
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                return too_large(limit)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        # A body without Content-Length (chunked) that turns out too big while being read.
        if isinstance(exception, RequestDataTooBig) and request.path.startswith(LIMITED_PREFIXES):
            return too_large(body_limit(request.path))
        return None


class NoStoreMiddleware:
    """Every page and API answer is kept out of browser and proxy caches (ASVS 8.2.1): on a shared
    ward PC a patient's page must not come back from the cache after log-out. Static files are
    served before this (WhiteNoise, far-future caching) and keep their own headers; a view that
    sets Cache-Control itself (the worklist's ETag polling) keeps its own, which includes no-store.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store, private"
        return response
