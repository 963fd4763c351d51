from django.http import HttpRequest, HttpResponse
from django.views import defaults

from .api_errors import json_error_view

_api_not_found = json_error_view(404, "Nothing is at this address. See /api/schema/ for the API.")
_api_server_error = json_error_view(500, "The server failed; the error is logged. Nothing was stored.")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(("/api/", "/fhir/", "/cds-services"))


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return _api_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return _api_server_error(request)
    return defaults.server_error(request)
