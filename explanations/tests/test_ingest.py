"""POST /api/v1/predictions/ (CONTRACT.md section 2) through the API, as a scoring service sees it."""

import json
import math

import pytest
from django.test import Client

from engine.treeshap import sigmoid
from explanations.models import Explanation
from explanations.services import prediction_ingest
from explanations.tests.helpers import NOTHING, stored_counts
from models_registry.serving import serving_model
from patients.models import Alert, Encounter, Patient, Prediction
from sightline.api_errors import ApiError

URL = "/api/v1/predictions/"

pytestmark = pytest.mark.django_db


def post(client, payload, url=URL):
    return client.post(url, payload, format="json")


def expected_margin(model_version, payload) -> float:
    serving = serving_model(model_version)
    values = {name: (entry or {}).get("value") for name, entry in payload["features"].items()}
    return float(serving.predict_margin(serving.encode(values)[None, :])[0])


def assert_error(response, status_code: int, code: str, field: str) -> dict:
    assert response.status_code == status_code, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code, body
    assert field in body["fields"], body
    assert body["detail"]
    return body


# --- success -----------------------------------------------------------------------------------


def test_ingest_stores_the_models_risk_tier_and_a_pending_explanation(
    service_client, prediction_payload, model_version
):
    payload = prediction_payload(0)

    response = post(service_client, payload)

    assert response.status_code == 201, response.content
    body = response.json()
    prediction = Prediction.objects.get(pk=body["id"])
    margin = expected_margin(model_version, payload)
    assert prediction.margin == pytest.approx(margin, abs=1e-6)
    assert body["risk"] == pytest.approx(float(sigmoid(margin)), abs=1e-6)
    assert body["tier"] == model_version.tier_for(body["risk"]) == prediction.tier
    url = f"/api/v1/predictions/{prediction.pk}/explanation/"
    assert body["explanation"] == {"status": "pending", "url": url}
    assert prediction.model_version == model_version
    assert prediction.explanation.status == Explanation.Status.PENDING
    assert prediction.patient.external_id == payload["patient"]["id"]
    assert prediction.patient.unit == payload["patient"]["unit"] == prediction.unit
    assert prediction.encounter.external_id == payload["encounter_id"]
    assert prediction.source == "rest"
    # Every model input is stored (jsonb keeps no key order; the API answers in model order).
    assert set(prediction.features) == {f.name for f in model_version.input_features()}


def test_alert_is_raised_for_medium_and_high_tiers_only(service_client, prediction_payload, model_version):
    tiers = {}
    for index in range(prediction_payload.count):
        body = post(service_client, prediction_payload(index)).json()
        tiers.setdefault(body["tier"], body)
        if len(tiers) == 3:
            break
    assert set(tiers) == {"low", "medium", "high"}, "the demo patients should cover every tier"
    assert tiers["low"]["alert"] is None
    for tier in ("medium", "high"):
        alert = Alert.objects.get(prediction_id=tiers[tier]["id"])
        assert tiers[tier]["alert"] == {"id": alert.pk, "url": f"/alerts/{alert.pk}/"}
        assert alert.tier == tier
        assert alert.risk == pytest.approx(tiers[tier]["risk"])
    assert not Alert.objects.filter(prediction_id=tiers["low"]["id"]).exists()


def test_missing_feature_is_stored_as_not_measured_and_scored_by_the_model(
    service_client, prediction_payload, model_version
):
    payload = prediction_payload(1)
    payload["features"]["creatinine"] = None
    payload["features"].pop("albumin")

    response = post(service_client, payload)

    assert response.status_code == 201, response.content
    prediction = Prediction.objects.get(pk=response.json()["id"])
    assert prediction.features["creatinine"]["value"] is None
    not_measured = {"value": None, "unit": "g/dL", "observed_at": None, "source": None}
    assert prediction.features["albumin"] == not_measured
    # Missing means NaN for the model (XGBoost routes it), never a filled-in value.
    assert prediction.margin == pytest.approx(expected_margin(model_version, payload), abs=1e-6)


def test_pinned_model_version_and_matching_risk_are_accepted(
    service_client, prediction_payload, model_version
):
    payload = prediction_payload(2, model_version=model_version.version)
    payload["risk"] = float(sigmoid(expected_margin(model_version, payload))) + 0.5e-4

    response = post(service_client, payload)

    assert response.status_code == 201, response.content


def test_patient_unit_bed_and_name_follow_the_latest_scoring(service_client, prediction_payload):
    first = prediction_payload(0)
    later = prediction_payload(0, external_id="run-later/P", scored_at="2026-01-05T09:00:00Z")
    later["patient"].update(unit="CCU", bed="3", display_name="Moved, Patient")
    earlier = prediction_payload(0, external_id="run-backfill/P", scored_at="2025-12-01T09:00:00Z")
    earlier["patient"].update(unit="NEURO-ICU", bed="9")
    for features in (later["features"], earlier["features"]):
        for entry in features.values():
            if entry and entry.get("observed_at"):
                entry["observed_at"] = "2025-12-01T08:00:00Z"

    for payload in (first, later, earlier):
        assert post(service_client, payload).status_code == 201

    patient = Patient.objects.get(external_id=first["patient"]["id"])
    assert (patient.unit, patient.bed, patient.display_name) == ("CCU", "3", "Moved, Patient")
    # Each prediction keeps the unit it was scored in.
    assert Prediction.objects.get(external_id="run-backfill/P").unit == "NEURO-ICU"
    assert Encounter.objects.count() == 1


# --- idempotency -------------------------------------------------------------------------------


def test_same_body_again_returns_the_stored_prediction(service_client, prediction_payload):
    payload = prediction_payload(0)
    first = post(service_client, payload)

    again = post(service_client, payload)

    assert first.status_code == 201
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert stored_counts()["predictions"] == 1
    assert stored_counts()["explanations"] == 1


def test_replay_is_recognised_whatever_the_key_order(service_client, prediction_payload):
    payload = prediction_payload(0)
    assert post(service_client, payload).status_code == 201
    reordered = dict(reversed(list(payload.items())))

    assert post(service_client, reordered).status_code == 200


def test_different_body_under_the_same_key_is_a_conflict(service_client, prediction_payload):
    payload = prediction_payload(0)
    assert post(service_client, payload).status_code == 201
    changed = prediction_payload(0)
    changed["features"]["heart_rate"]["value"] = 131

    response = post(service_client, changed)

    assert_error(response, 409, "idempotency_conflict", "external_id")
    assert stored_counts()["predictions"] == 1
    stored = Prediction.objects.get().features["heart_rate"]["value"]
    assert stored == payload["features"]["heart_rate"]["value"]


def test_encounter_of_another_patient_is_a_conflict(service_client, prediction_payload):
    assert post(service_client, prediction_payload(0)).status_code == 201
    other = prediction_payload(1, encounter_id=prediction_payload(0)["encounter_id"])
    before = stored_counts()

    response = post(service_client, other)

    assert_error(response, 409, "encounter_conflict", "encounter_id")
    assert stored_counts() == before


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


# --- who may post ------------------------------------------------------------------------------


def test_unauthenticated_is_401(prediction_payload):
    response = Client().post(URL, prediction_payload(0), content_type="application/json")

    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert stored_counts() == NOTHING


def test_revoked_or_wrong_token_is_401(prediction_payload):
    response = Client().post(
        URL, prediction_payload(0), content_type="application/json", HTTP_AUTHORIZATION="Token not-a-token"
    )

    assert response.status_code == 401


def test_clinician_session_cannot_post_predictions(alice_client, prediction_payload):
    response = alice_client.post(URL, prediction_payload(0), content_type="application/json")

    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"
    assert stored_counts() == NOTHING


def test_a_list_body_on_the_single_endpoint_is_400(service_client, prediction_payload):
    response = post(service_client, [prediction_payload(0)])

    assert response.status_code == 400
    assert stored_counts() == NOTHING


def test_margin_is_log_odds_of_risk(service_client, prediction_payload):
    body = post(service_client, prediction_payload(3)).json()
    prediction = Prediction.objects.get(pk=body["id"])

    assert prediction.risk == pytest.approx(1 / (1 + math.exp(-prediction.margin)), abs=1e-9)


def test_feature_that_is_not_an_object_is_400_naming_it(service_client, prediction_payload):
    payload = prediction_payload(0)
    payload["features"]["map"] = 65

    assert_error(post(service_client, payload), 400, "invalid", "features.map")
    assert stored_counts() == NOTHING


def test_source_with_a_bad_url_is_400_naming_it(service_client, prediction_payload):
    payload = prediction_payload(0)
    payload["features"]["map"]["source"] = {"system": "monitor", "url": "not a url"}

    assert_error(post(service_client, payload), 400, "invalid", "features.map.source.url")
    assert stored_counts() == NOTHING


def test_source_is_stored_with_the_value(service_client, prediction_payload):
    payload = prediction_payload(0)
    source = {
        "system": "LIS",
        "reference": "Observation/lab-998",
        "url": "https://ehr.example.org/Observation/1",
    }
    payload["features"]["creatinine"] = {
        "value": 1.4,
        "unit": "mg/dL",
        "observed_at": "2026-01-04T10:05:00Z",
        "source": source,
    }

    response = post(service_client, payload)

    stored = Prediction.objects.get(pk=response.json()["id"]).features["creatinine"]
    assert stored == {"value": 1.4, "unit": "mg/dL", "observed_at": "2026-01-04T10:05:00Z", "source": source}
