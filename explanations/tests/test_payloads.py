"""The shape check of a posted prediction (explanations.payloads), without a database."""

from datetime import UTC, datetime

import pytest

from common.timestamps import INVALID, NAIVE
from explanations.payloads import prediction_request_schema, prediction_shape_check
from explanations.serializers import OutcomeInSerializer


def payload(**changes) -> dict:
    body = {
        "external_id": " run-1/P-1 ",
        "model": "icu-mortality-30d",
        "patient": {"id": "P-1", "unit": "MICU"},
        "encounter_id": "E-1",
        "scored_at": "2026-01-05T09:00:00+01:00",
        "features": {
            "lactate": {
                "value": 4.2,
                "unit": "mmol/L",
                "observed_at": "2026-01-05T07:05:00Z",
                "source": {"system": "LIS", "reference": "", "url": "https://lis.example/obs/1"},
            },
            "urine": None,
        },
    }
    body.update(changes)
    return body


def test_a_valid_body_comes_back_as_plain_dicts_with_utc_times_and_defaults():
    data, errors = prediction_shape_check(payload())
    assert errors == {}
    assert data["external_id"] == "run-1/P-1"  # trimmed, as before
    assert data["scored_at"] == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    assert data["patient"] == {"id": "P-1", "unit": "MICU", "display_name": "", "bed": ""}
    lactate = data["features"]["lactate"]
    assert lactate["observed_at"] == datetime(2026, 1, 5, 7, 5, tzinfo=UTC)
    # An empty source key is the same as one left out.
    assert lactate["source"] == {"system": "LIS", "url": "https://lis.example/obs/1"}
    assert data["features"]["urine"] is None


def test_every_problem_is_named_by_its_field_path():
    body = payload(scored_at="2026-01-05T09:00:00", risk=True, model_version=0)
    body["patient"]["id"] = "   "
    body["features"]["lactate"]["value"] = [4.2]
    body["features"]["lactate"]["source"]["url"] = "javascript:alert(1)"
    data, errors = prediction_shape_check(body)
    assert data is None
    assert errors == {
        "model_version": ["Input should be greater than or equal to 1"],
        "patient.id": ["String should have at least 1 character"],
        "scored_at": ["The timestamp has no time zone; add Z or an offset such as +01:00."],
        "risk": ["Input should be a valid number"],
        "features.lactate.value": ["A feature value is a number, true/false, a category or null."],
        "features.lactate.source.url": ["Not a valid URL."],
    }


def test_a_prediction_without_an_encounter_is_refused_naming_the_field():
    """Pen test finding 17 (CONTRACT section 2): without encounter_id a prediction could never meet
    its outcome; it was accepted with 201."""
    body = payload()
    del body["encounter_id"]
    assert prediction_shape_check(body) == (None, {"encounter_id": ["Field required"]})
    assert prediction_shape_check(payload(encounter_id="  "))[1] == {
        "encounter_id": ["String should have at least 1 character"]
    }


def test_types_are_strict():
    for field, value in [("external_id", 12345), ("risk", "0.7"), ("model_version", 1.0), ("model", ["m"])]:
        _, errors = prediction_shape_check(payload(**{field: value}))
        assert list(errors) == [field], (field, value)


def test_a_score_from_the_future_is_refused(settings):
    settings.SCORED_AT_MAX_FUTURE_SECONDS = 300
    _, errors = prediction_shape_check(payload(scored_at="2999-01-01T00:00:00Z"))
    assert errors["scored_at"][0].startswith("scored_at is in the future (more than 300 s ahead")


def test_the_documented_schema_is_the_checked_one():
    schema = prediction_request_schema()
    assert set(schema["required"]) == {
        "external_id",
        "model",
        "patient",
        "encounter_id",
        "scored_at",
        "features",
    }
    assert schema["properties"]["external_id"]["maxLength"] == 200
    assert schema["properties"]["risk"] == {
        "maximum": 1.0,
        "minimum": 0.0,
        "nullable": True,
        "title": "Risk",
        "type": "number",
    }
    entry = schema["properties"]["features"]["additionalProperties"]
    assert entry["nullable"] is True
    assert set(entry["allOf"][0]["properties"]) == {"value", "unit", "observed_at", "source"}
    assert "$ref" not in str(schema)  # OpenAPI 3.0 has no $defs: everything is inlined


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-05T09:00:00+01:00", datetime(2026, 1, 5, 8, 0, tzinfo=UTC)),
        ("2026-01-05 08:00:00Z", datetime(2026, 1, 5, 8, 0, tzinfo=UTC)),
        ("2026-01-05T08:00:00.250Z", datetime(2026, 1, 5, 8, 0, 0, 250000, tzinfo=UTC)),
        ("2026-01-05T08:00:00", NAIVE),
        ("2026-01-05", NAIVE),
        ("2026-13-05T08:00:00Z", INVALID),
        ("yesterday at eight", INVALID),
        ("", INVALID),
    ],
)
def test_a_prediction_and_an_outcome_read_a_timestamp_alike(text, expected):
    """One rule (common.timestamps) for the pydantic payload check and the DRF outcome
    serializer: the same text is the same instant, or the same refusal, in both."""
    data, errors = prediction_shape_check(payload(scored_at=text))
    outcome = OutcomeInSerializer(data={"encounter_id": "E-1", "outcome": True, "occurred_at": text})
    outcome.is_valid()
    if isinstance(expected, datetime):
        assert errors == {} and data["scored_at"] == expected
        assert outcome.validated_data["occurred_at"] == expected
    else:
        assert errors == {"scored_at": [expected]}
        assert outcome.errors["occurred_at"] == [expected]
