"""NDJSON request bodies for bulk ingest: one JSON object per line."""

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from sightline.parsers import strict_loads


class NDJSONParser(BaseParser):
    media_type = "application/x-ndjson"

    def parse(self, stream, media_type=None, parser_context=None) -> list:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        items = []
        for number, raw in enumerate(stream, start=1):
            line = raw.decode(encoding).strip()
            if not line:
                continue
            try:
                items.append(strict_loads(line))
            except (ValueError, RecursionError) as exc:
                raise ParseError(f"Line {number} is not valid JSON: {exc}") from exc
        return items
