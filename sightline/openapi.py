"""OpenAPI schema hooks (drf-spectacular): every API error is documented, in the one JSON shape of
CONTRACT.md section 7, so clients (and schemathesis) can rely on it."""

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "A stable code, e.g. invalid, not_found, throttled."},
        "detail": {"type": "string", "description": "A sentence a person can act on."},
        "fields": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "Messages per field, e.g. features.lactate.value.",
        },
    },
    "required": ["error", "detail"],
}

DESCRIPTIONS = {
    "400": "The request is invalid; `fields` names what to fix. Nothing was stored.",
    "401": "Not authenticated: log in, or send `Authorization: Token <key>`.",
    "403": "Authenticated, but this role may not do this.",
    "404": "No such object (in the path, or named in the body or query), or not one this user may see.",
    "405": "This method is not allowed here.",
    "409": "The same key was sent before with a different body.",
    "413": "The body is larger than this endpoint accepts.",
    "415": "The body's content type is not accepted here.",
    "422": "Well-formed, but refused by a rule of the contract (e.g. leakage, a risk that does not match).",
    "429": "Too many requests for this token or user; see Retry-After.",
    "503": "The database is unavailable; nothing was stored. Retry later (see Retry-After).",
}
# 404 everywhere: an object in the path, or one the body or query names (an encounter, a model).
ALWAYS = ("400", "401", "403", "404", "405", "429", "503")
WITH_BODY = ("409", "413", "415", "422")


def add_error_responses(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: an `Error` component and the error responses of every operation."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            codes = list(ALWAYS)
            if "requestBody" in operation:
                codes += WITH_BODY
            responses = operation.setdefault("responses", {})
            for code in codes:
                content = {"application/json": {"schema": ref}}
                responses.setdefault(code, {"description": DESCRIPTIONS[code], "content": content})
    return result
