"""The one rule for timestamps: how they are read in from outside (scores, observations, outcomes)
and how they are written out (every API, export and FHIR resource: ISO-8601 in UTC, "Z").

An hour's error in an observation time can hide leakage, so a timestamp without a time zone is
refused rather than read in the server's zone. Used by the prediction payload check (pydantic,
explanations.payloads) and the outcome serializer (DRF, explanations.serializers).
"""

from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime

INVALID = "Not an ISO-8601 timestamp (e.g. 2026-11-22T10:32:00Z)."
NAIVE = "The timestamp has no time zone; add Z or an offset such as +01:00."


class TimestampError(ValueError):
    """`code` is "invalid" or "naive"; the message says what to send instead."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def aware_timestamp(text: str) -> datetime:
    """An ISO-8601 timestamp with its zone ("Z" or "+01:00"), in UTC."""
    try:
        value = parse_datetime(text.strip())
    except ValueError:
        value = None
    if value is None:
        raise TimestampError("invalid", INVALID)
    if value.tzinfo is None or value.utcoffset() is None:
        raise TimestampError("naive", NAIVE)
    return value.astimezone(UTC)


def iso_utc(value: datetime | None) -> str | None:
    """An aware datetime as ISO-8601 in UTC with "Z" (2026-11-22T10:32:00Z); None stays None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
