"""Request and response shapes of the outcome and cohort API (CONTRACT.md section 3).

A posted prediction's shape is checked in explanations.payloads (pydantic: bulk ingest checks
up to 10,000 of them per request).
"""

from datetime import datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common import timestamps
from common.timestamps import iso_utc


@extend_schema_field(OpenApiTypes.DATETIME)
class AwareDateTimeField(serializers.Field):
    """An ISO-8601 timestamp that carries its time zone ("Z" or "+01:00"); returned in UTC.

    DRF's DateTimeField quietly reads a naive timestamp in the server's zone; this one follows
    common.timestamps, as the prediction payloads do.
    """

    default_error_messages = {"invalid": timestamps.INVALID, "naive": timestamps.NAIVE}

    def to_internal_value(self, data) -> datetime:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            return timestamps.aware_timestamp(data)
        except timestamps.TimestampError as exc:
            self.fail(exc.code)

    def to_representation(self, value: datetime) -> str:
        return iso_utc(value)


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would quietly turn 12345 into "12345"."""

    default_error_messages = {"not_a_string": "Expected a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


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
