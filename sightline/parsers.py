"""A JSON request parser that refuses what Python's json module lets through.

NaN, Infinity and -Infinity are not JSON numbers; a body nested deeper than any real payload
would exhaust the parser's recursion (a 500); a NUL character cannot be stored in PostgreSQL
text; a lone surrogate cannot be encoded. Each is answered 400 with the reason.
"""

import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _check(value, depth: int = 0) -> None:
    """Refuse nesting deeper than any payload needs, NUL characters and unpaired surrogates."""
    if depth > MAX_DEPTH:
        raise ValueError(f"the JSON is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a string contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string contains an unpaired surrogate") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, depth + 1)
            _check(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)


def strict_loads(text: str):
    # json.loads itself raises RecursionError on absurd nesting; callers treat it as invalid JSON.
    value = json.loads(text, parse_constant=_reject_constant)
    _check(value)
    return value


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return strict_loads(stream.read().decode(encoding))
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from exc
