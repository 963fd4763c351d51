"""POST /api/v1/predictions/ (CONTRACT.md section 2) through the API, as a scoring service sees it:
what is stored, idempotency and who may post (the validation rules are in test_ingest_validation.py)."""

import math

import pytest
from django.test import Client

from engine.treeshap import sigmoid
from explanations.models import Explanation
from explanations.tests.helpers import NOTHING, stored_counts
from explanations.tests.ingest_api import URL, assert_error, expected_margin, post
from patients.models import Alert, Encounter, Patient, Prediction

pytestmark = pytest.mark.django_db


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
