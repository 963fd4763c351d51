"""A JSON request parser that refuses what Python's json module lets through.

NaN, Infinity and -Infinity are not JSON numbers; a body nested deeper than any real payload
would exhaust the parser's recursion (a 500); a NUL character cannot be stored in PostgreSQL
text; a lone surrogate cannot be encoded. Each is answered 400 with the reason.
"""

import json
import re

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _check(value, depth: int = 0) -> None:
    """Refuse nesting deeper than any payload needs, NUL characters and unpaired surrogates.
    `depth`: how many containers hold `value`."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a string contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string contains an unpaired surrogate") from None
    elif isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise ValueError(f"the JSON is nested deeper than {MAX_DEPTH} levels")
        children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        for child in children:
            _check(child, depth + 1)


# The only ways a parsed string can hold a NUL or a lone surrogate, given that json.loads refuses
# raw control characters in strings and the text itself encodes as UTF-8.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89abcdefABCDEF])")


def _too_deep(value) -> bool:
    """Whether containers nest more than MAX_DEPTH deep: a walk over the containers only, level by
    level, that stops at the first level past the limit."""
    level = [value] if type(value) in (dict, list) else []
    for _ in range(MAX_DEPTH):
        if not level:
            return False
        level = [
            child
            for container in level
            for child in (container.values() if type(container) is dict else container)
            if type(child) in (dict, list)
        ]
    return bool(level)


def strict_loads(text: str):
    # json.loads itself raises RecursionError on absurd nesting; callers treat it as invalid JSON.
    value = json.loads(text, parse_constant=_reject_constant)
    try:
        text.encode("utf-8")
        suspect = _SUSPECT_ESCAPE.search(text) is not None
    except UnicodeEncodeError:
        suspect = True
    if suspect:
        _check(value)  # walk every value to name the problem
    elif _too_deep(value):
        raise ValueError(f"the JSON is nested deeper than {MAX_DEPTH} levels")
    return value


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return strict_loads(stream.read().decode(encoding))
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from exc
