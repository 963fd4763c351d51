"""Request and response shapes of the prediction and outcome API (CONTRACT.md sections 2 and 3).

These check the *shape* of a body only. Whether a feature exists, has the right unit, kind and
range, or leaks information from after the decision point depends on the model version and is
checked in services.prediction_ingest.
"""

import math
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


@extend_schema_field(OpenApiTypes.DATETIME)
class AwareDateTimeField(serializers.Field):
    """An ISO-8601 timestamp that carries its time zone ("Z" or "+01:00"); returned in UTC.

    DRF's DateTimeField quietly reads a naive timestamp in the server's zone; an hour's error
    in an observation time can hide leakage, so a timestamp without a zone is rejected.
    """

    default_error_messages = {
        "invalid": "Not an ISO-8601 timestamp (e.g. 2026-11-22T10:32:00Z).",
        "naive": "The timestamp has no time zone; add Z or an offset such as +01:00.",
    }

    def to_internal_value(self, data) -> datetime:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            value = parse_datetime(data.strip())
        except ValueError:
            value = None
        if value is None:
            self.fail("invalid")
        if value.tzinfo is None or value.utcoffset() is None:
            self.fail("naive")
        return value.astimezone(UTC)

    def to_representation(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@extend_schema_field(OpenApiTypes.OBJECT)
class FeatureEntryField(serializers.Field):
    """One posted feature: `{"value", "unit", "observed_at", "source"}`, or null ("not measured").

    A hand-written field rather than a nested serializer: a bulk request carries 10,000 x ~25 of
    these, and a nested DRF serializer per entry costs more than everything else in ingest.
    Errors are keyed like a nested serializer's (`features.<name>.value`).
    """

    default_error_messages = {"not_an_object": "A feature is an object with a value, or null."}
    _observed_at = AwareDateTimeField()
    _url = URLValidator()

    def to_internal_value(self, data) -> dict:
        if not isinstance(data, dict):
            self.fail("not_an_object")
        errors: dict[str, list[str]] = {}
        entry: dict = {}
        value = data.get("value")
        if isinstance(value, (dict, list)):
            errors["value"] = ["A feature value is a number, true/false, a category or null."]
        elif isinstance(value, float) and not math.isfinite(value):
            errors["value"] = ["A feature value must be a finite number."]
        entry["value"] = value
        unit = data.get("unit")
        if unit is not None and (not isinstance(unit, str) or len(unit) > 50):
            errors["unit"] = ["A unit is a string of at most 50 characters."]
        entry["unit"] = unit
        observed_at = data.get("observed_at")
        if observed_at is not None:
            try:
                observed_at = self._observed_at.to_internal_value(observed_at)
            except serializers.ValidationError as exc:
                errors["observed_at"] = list(exc.detail)
        entry["observed_at"] = observed_at
        source = data.get("source")
        if source is not None:
            source, problems = _source_check(source, self._url)
            errors.update({f"source.{k}" if k else "source": v for k, v in problems.items()})
        entry["source"] = source
        if errors:
            raise serializers.ValidationError(errors)
        return entry


_SOURCE_LIMITS = {"system": 50, "reference": 300, "url": 1000}


def _source_check(source, url_validator) -> tuple[dict | None, dict[str, list[str]]]:
    """Where a value came from ({"system", "reference", "url"}), so a clinician can open it."""
    if not isinstance(source, dict):
        return None, {"": ['A source is an object: {"system", "reference", "url"}.']}
    problems: dict[str, list[str]] = {}
    clean = {}
    for key, limit in _SOURCE_LIMITS.items():
        text = source.get(key)
        if text in (None, ""):
            continue
        if not isinstance(text, str) or len(text) > limit:
            problems[key] = [f"A string of at most {limit} characters."]
            continue
        if key == "url":
            try:
                url_validator(text)
            except DjangoValidationError:
                problems[key] = ["Not a valid URL."]
                continue
        clean[key] = text
    return clean, problems


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would quietly turn 12345 into "12345"."""

    default_error_messages = {"not_a_string": "Expected a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictSlugField(StrictCharField, serializers.SlugField):
    pass


class StrictFloatField(serializers.FloatField):
    """A JSON number: not "0.7", not true (DRF's FloatField would accept both)."""

    default_error_messages = {"not_a_number": "Expected a number."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("not_a_number")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not "3", not 1.5, not true."""

    default_error_messages = {"not_an_integer": "Expected a whole number."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("not_an_integer")
        return super().to_internal_value(data)


class PatientSerializer(serializers.Serializer):
    id = StrictCharField(max_length=100)
    display_name = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    unit = StrictCharField(max_length=50)
    bed = StrictCharField(max_length=50, required=False, allow_blank=True, default="")


class PredictionInSerializer(serializers.Serializer):
    external_id = StrictCharField(max_length=200)
    model = StrictSlugField(max_length=100)
    model_version = StrictIntegerField(min_value=1, required=False, allow_null=True)
    patient = PatientSerializer()
    encounter_id = StrictCharField(max_length=100, required=False, allow_null=True, allow_blank=True)
    scored_at = AwareDateTimeField()
    risk = StrictFloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
    # name -> {"value", "unit", "observed_at", "source"}, or null for "not measured".
    features = serializers.DictField(child=FeatureEntryField(allow_null=True), allow_empty=True)

    def validate_scored_at(self, value: datetime) -> datetime:
        # A score from the future is a clock or integration fault; its leakage check would be void.
        latest = timezone.now() + timedelta(seconds=settings.SCORED_AT_MAX_FUTURE_SECONDS)
        if value > latest:
            raise serializers.ValidationError(
                f"scored_at is in the future (more than {settings.SCORED_AT_MAX_FUTURE_SECONDS} s ahead "
                "of this server's clock); check the scoring service's clock."
            )
        return value


class OutcomeInSerializer(serializers.Serializer):
    encounter_id = StrictCharField(max_length=100)
    outcome = serializers.BooleanField()
    occurred_at = AwareDateTimeField(required=False, allow_null=True)


class OutcomeOutSerializer(serializers.Serializer):
    encounter_id = serializers.CharField(source="encounter.external_id")
    outcome = serializers.BooleanField()
    occurred_at = AwareDateTimeField(allow_null=True)
    received_at = AwareDateTimeField()


class CohortQuerySerializer(serializers.Serializer):
    model = serializers.SlugField(max_length=100)
    version = serializers.IntegerField(min_value=1, required=False)
    unit = serializers.CharField(max_length=50, required=False)
    shift = serializers.ChoiceField(choices=["day", "night"], required=False)
    # Days in HOSPITAL_TIME_ZONE, inclusive.
    to = serializers.DateField(required=False)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField(required=False)  # a Python keyword, so added here
        return fields
