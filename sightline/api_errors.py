"""One JSON error shape for the whole API (CONTRACT.md section 7).

{"error": "<code>", "detail": "<sentence a person can act on>", "fields": {"<field>": ["..."]}}
"""

from typing import Any

from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApiError(exceptions.APIException):
    """An error with a contract code, a sentence and optional per-field messages."""

    def __init__(
        self,
        *,
        code: str,
        detail: str,
        status_code: int = status.HTTP_400_BAD_REQUEST,
        fields: dict[str, list[str]] | None = None,
    ) -> None:
        self.code = code
        self.detail = detail
        self.status_code = status_code
        self.fields = fields or {}


def flatten_fields(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error dict as {"features.lactate.value": ["..."]}."""
    out: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors" and prefix:
                name = prefix
            out.update(flatten_fields(value, name))
    elif isinstance(errors, list) and errors and all(not isinstance(e, (dict, list)) for e in errors):
        out[prefix or "body"] = [str(e) for e in errors]
    elif isinstance(errors, list):
        for index, value in enumerate(errors):
            out.update(flatten_fields(value, f"{prefix}[{index}]" if prefix else f"[{index}]"))
    else:
        out[prefix or "body"] = [str(errors)]
    return out


def error_body(code: str, detail: str, fields: dict[str, list[str]] | None = None) -> dict:
    return {"error": code, "detail": detail, "fields": fields or {}}


_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "throttled",
}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApiError):
        return Response(error_body(exc.code, str(exc.detail), exc.fields), status=exc.status_code)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = _CODES.get(response.status_code, "error")
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_fields(exc.detail)
        first = next(iter(fields.items()), None)
        detail = f"{first[0]}: {first[1][0]}" if first else "The request is invalid."
        response.data = error_body("invalid", detail, fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        response.data = error_body(code, str(detail))
    return response


def json_error_view(status_code: int, detail: str):
    def view(request, exception=None):
        return JsonResponse(error_body(_CODES.get(status_code, "error"), detail), status=status_code)

    return view
