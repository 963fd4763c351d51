"""POST /api/v1/predictions/ (CONTRACT.md section 2): each validation rule answers the right status,
names the field and stores nothing; leakage and a risk that differs from the model's are 422."""

import json

import pytest
from django.test import Client

from engine.treeshap import sigmoid
from explanations.services import prediction_ingest
from explanations.tests.helpers import NOTHING, stored_counts
from explanations.tests.ingest_api import URL, assert_error, expected_margin, post
from sightline.api_errors import ApiError

pytestmark = pytest.mark.django_db


# --- validation: each rule answers the right status, names the field and stores nothing ----------


def _unknown_feature(p):
    p["features"]["troponin"] = {"value": 0.3, "unit": "ng/mL"}


def _out_of_range(p):
    p["features"]["heart_rate"] = {"value": 400, "unit": "/min"}


def _below_range(p):
    p["features"]["sodium"] = {"value": 12, "unit": "mmol/L"}


def _wrong_unit(p):
    p["features"]["creatinine"] = {"value": 150, "unit": "µmol/L"}


def _string_for_numeric(p):
    p["features"]["map"] = {"value": "65", "unit": "mmHg"}


def _unknown_category(p):
    p["features"]["cancer"] = {"value": "Maybe"}


def _bad_binary(p):
    p["features"]["dnr_day1"] = {"value": 2}


def _naive_observed_at(p):
    p["features"]["map"]["observed_at"] = "2026-01-04T10:00:00"


def _naive_scored_at(p):
    p["scored_at"] = "2026-01-05T07:00:00"


def _not_a_timestamp(p):
    p["scored_at"] = "yesterday"


def _value_is_an_object(p):
    p["features"]["map"]["value"] = {"mean": 65}


def _unknown_model(p):
    p["model"] = "sepsis-6h"


def _unknown_version(p):
    p["model_version"] = 99


def _missing_patient_unit(p):
    del p["patient"]["unit"]


def _risk_not_a_probability(p):
    p["risk"] = 1.7


@pytest.mark.parametrize(
    ("mutate", "code", "field"),
    [
        (_unknown_feature, "unknown_feature", "features.troponin"),
        (_out_of_range, "out_of_range", "features.heart_rate.value"),
        (_below_range, "out_of_range", "features.sodium.value"),
        (_wrong_unit, "unit_mismatch", "features.creatinine.unit"),
        (_string_for_numeric, "invalid_value", "features.map.value"),
        (_unknown_category, "invalid_value", "features.cancer.value"),
        (_bad_binary, "invalid_value", "features.dnr_day1.value"),
        (_naive_observed_at, "invalid", "features.map.observed_at"),
        (_naive_scored_at, "invalid", "scored_at"),
        (_not_a_timestamp, "invalid", "scored_at"),
        (_value_is_an_object, "invalid", "features.map.value"),
        (_unknown_model, "unknown_model", "model"),
        (_unknown_version, "unknown_model_version", "model_version"),
        (_missing_patient_unit, "invalid", "patient.unit"),
        (_risk_not_a_probability, "invalid", "risk"),
    ],
)
def test_invalid_payload_is_400_naming_the_field_and_stores_nothing(
    service_client, prediction_payload, mutate, code, field
):
    payload = prediction_payload(0)
    mutate(payload)

    response = post(service_client, payload)

    assert_error(response, 400, code, field)
    assert stored_counts() == NOTHING


def test_non_finite_number_in_the_body_is_400(service_token, prediction_payload):
    payload = prediction_payload(0)
    payload["features"]["heart_rate"]["value"] = 1e999  # serialised by json.dumps as Infinity

    response = Client().post(
        URL, json.dumps(payload), content_type="application/json", HTTP_AUTHORIZATION=f"Token {service_token}"
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert stored_counts() == NOTHING


def test_non_finite_number_from_python_is_rejected_naming_the_feature(prediction_payload):
    payload = prediction_payload(0)
    payload["features"]["heart_rate"]["value"] = float("nan")

    with pytest.raises(ApiError) as caught:
        prediction_ingest(payload=payload, source="rest")

    assert caught.value.status_code == 400
    assert stored_counts() == NOTHING


def test_all_feature_problems_are_reported_at_once(service_client, prediction_payload):
    payload = prediction_payload(0)
    _out_of_range(payload)
    _wrong_unit(payload)

    body = assert_error(post(service_client, payload), 400, "out_of_range", "features.heart_rate.value")

    assert "features.creatinine.unit" in body["fields"]


def test_model_without_a_production_version_needs_a_pinned_version(
    service_client, prediction_payload, model_version
):
    model_version.status = model_version.Status.CANDIDATE
    model_version.save(update_fields=["status"])

    assert_error(post(service_client, prediction_payload(0)), 400, "no_production_version", "model")
    assert post(service_client, prediction_payload(0, model_version=model_version.version)).status_code == 201


# --- leakage and risk mismatch: 422 ------------------------------------------------------------


def test_feature_known_only_after_the_decision_is_leakage(service_client, prediction_payload):
    payload = prediction_payload(0)
    payload["features"]["rhc_day1"] = {"value": True}

    body = assert_error(post(service_client, payload), 422, "leakage", "features.rhc_day1")

    assert "decision point" in body["fields"]["features.rhc_day1"][0]
    assert stored_counts() == NOTHING


def test_observation_after_the_scoring_time_is_leakage(service_client, prediction_payload):
    payload = prediction_payload(0)
    payload["features"]["map"]["observed_at"] = "2026-01-05T09:00:00+01:00"
    payload["scored_at"] = "2026-01-05T07:59:00Z"

    assert_error(post(service_client, payload), 422, "leakage", "features.map.observed_at")
    assert stored_counts() == NOTHING


def test_observation_in_another_zone_before_scoring_is_fine(service_client, prediction_payload):
    payload = prediction_payload(0)
    payload["scored_at"] = "2026-01-05T08:30:00Z"
    payload["features"]["map"]["observed_at"] = "2026-01-05T09:29:00+01:00"

    assert post(service_client, payload).status_code == 201


def test_posted_risk_that_differs_from_the_model_is_422_with_both_numbers(
    service_client, prediction_payload, model_version
):
    payload = prediction_payload(0)
    model_risk = float(sigmoid(expected_margin(model_version, payload)))
    payload["risk"] = round(model_risk + 0.01, 6)

    body = assert_error(post(service_client, payload), 422, "risk_mismatch", "risk")

    assert f"{payload['risk']:.6f}" in body["detail"]
    assert f"{model_risk:.6f}" in body["detail"]
    assert stored_counts() == NOTHING
