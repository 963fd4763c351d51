"""The explanation engine through its public surface: the stored explanation and its API body,
the version profile, abstention and what-if (the cohort aggregates and recompute job are in
test_cohort_aggregates.py)."""

import time
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from engine import treeshap as core
from explanations import services
from explanations.models import VersionProfile
from explanations.services.profiles import version_profile_loaded
from explanations.tests.helpers import ingest
from models_registry.serving import serving_model
from patients.models import AuditEvent

pytestmark = pytest.mark.django_db


def body_of(client, prediction) -> dict:
    response = client.get(f"/api/v1/predictions/{prediction.pk}/explanation/")
    assert response.status_code == 200, response.content
    return response.json()


def test_profile_is_built_once_and_its_reference_shap_is_content_addressed(model_version):
    first = services.version_profile_build(version=model_version)
    again = services.version_profile_build(version=model_version)

    assert first.status == again.status == VersionProfile.Status.READY
    assert VersionProfile.objects.filter(version=model_version).count() == 1
    assert again.reference_shap_sha256 == first.reference_shap_sha256
    path = Path(settings.MODEL_STORE) / first.reference_shap_sha256
    matrix = np.load(path, allow_pickle=False)
    assert matrix.shape == (model_version.reference_size, len(model_version.input_features()))
    params = first.params
    # Interval coverage measured on the half of the reference set the fit did not see.
    assert params["conformal"]["nominal"] == 0.9
    assert 0.85 <= params["conformal"]["coverage_check_half"] <= 0.97
    assert (
        params["calibration"]["fit_size"] + params["calibration"]["check_size"]
        == model_version.reference_size
    )
    assert len(params["key_features"]) == 5


def test_ready_explanation_stores_points_uncertainty_neighbours_and_stability(
    service_client, prediction_payload, model_version, charlie_client, django_capture_on_commit_callbacks
):
    prediction = ingest(service_client, prediction_payload(1), django_capture_on_commit_callbacks)

    body = body_of(charlie_client, prediction)

    assert body["status"] == "ready" and body["not_yet_computed"] == []
    assert body["units_by_field"]["features[].shap"] == "log-odds"
    points = sum(f["points"] for f in body["features"])
    assert points == pytest.approx(body["risk"] - float(core.sigmoid(body["base_value"])), abs=1e-6)

    unc = body["uncertainty"]
    assert unc["interval"]["low"] <= unc["interval"]["high"]
    low, high = unc["calibration"]["bin"]
    assert low <= body["risk"] < high or high == 1.0
    assert unc["calibration"]["ci"][0] <= unc["calibration"]["observed_rate"] <= unc["calibration"]["ci"][1]
    assert "reference patients scored" in unc["calibration"]["summary"]
    assert unc["ood"]["flag"] is False and body["abstain"] is False

    # Similar patients equal a brute-force search over the stored reference SHAP matrix.
    profile = version_profile_loaded(model_version)
    shap = np.array([f["shap"] for f in body["features"]])
    distances = np.sqrt(((profile.reference_shap - shap) ** 2).sum(axis=1))
    brute = np.argsort(distances, kind="stable")[:10]
    similar = body["similar_patients"]
    assert [n["reference_row"] for n in similar["neighbours"]] == brute.tolist()
    reference = serving_model(model_version).reference
    assert [n["outcome"] for n in similar["neighbours"]] == reference["died_30d"].iloc[brute].astype(
        bool
    ).tolist()
    assert similar["events"] == int(reference["died_30d"].iloc[brute].sum())
    assert similar["summary"].startswith(f"{similar['events']} of 10 similar patients")
    assert similar["neighbours"][0]["risk"] == pytest.approx(reference["expected_risk"].iloc[brute[0]])
    assert all("label" in f for n in similar["neighbours"] for f in n["shared_features"])

    stab = body["stability"]
    assert stab["perturbations"] == 20 and stab["top_k"] == 5
    assert 0 <= stab["agreement"] <= 1 and stab["unstable"] == (stab["agreement"] < stab["threshold"])


def test_model_abstains_when_key_inputs_are_not_measured(
    service_client, prediction_payload, model_version, charlie_client, django_capture_on_commit_callbacks
):
    key = services.version_profile_build(version=model_version).params["key_features"]
    payload = prediction_payload(2)
    for name in key[:3]:
        payload["features"][name] = None

    prediction = ingest(service_client, payload, django_capture_on_commit_callbacks)
    body = body_of(charlie_client, prediction)

    assert body["status"] == "ready"
    assert body["abstain"] is True
    assert "3 of the 5 most influential inputs are not measured" in body["abstain_reason"]
    assert body["uncertainty"]["key_features"]["not_measured"] == key[:3]
    # The SHAP values are still there (the UI shows the abstention instead of the risk).
    assert all(f["shap"] is not None for f in body["features"])


def test_model_abstains_far_out_of_distribution(
    service_client, prediction_payload, charlie_client, django_capture_on_commit_callbacks
):
    payload = prediction_payload(3)
    extreme = {"map": 290, "heart_rate": 290, "resp_rate": 115, "sodium": 195, "wbc": 240, "pf_ratio": 990}
    for name, value in extreme.items():
        payload["features"][name]["value"] = value

    body = body_of(charlie_client, ingest(service_client, payload, django_capture_on_commit_callbacks))

    assert body["uncertainty"]["ood"]["flag"] is True
    assert body["uncertainty"]["ood"]["reference_percentile"] > 99.0
    assert body["abstain"] is True and "not validated on patients like this" in body["abstain_reason"]


# --- what-if -----------------------------------------------------------------------------------


def what_if(client, prediction, changes):
    return client.post(
        f"/api/v1/predictions/{prediction.pk}/what-if/", {"changes": changes}, content_type="application/json"
    )


REFUSALS = [
    ({"age": 40}, "changes.age", "immutable_feature"),
    ({"rhc_day1": True}, "changes.rhc_day1", "invalid"),
    ({"lactate": 2.0}, "changes.lactate", "unknown_feature"),
    ({"map": 400}, "changes.map", "invalid"),
    ({"map": "high"}, "changes.map", "invalid"),
    ({"dnr_day1": True}, "changes.dnr_day1", "immutable_feature"),  # a care decision
    ({"apache_aps": 40}, "changes.apache_aps", "immutable_feature"),  # a composite score
    ({}, "changes", "invalid"),
]


def test_what_if_refuses_what_cannot_be_changed(
    service_client, prediction_payload, charlie_client, django_capture_on_commit_callbacks
):
    prediction = ingest(service_client, prediction_payload(4), django_capture_on_commit_callbacks)

    for changes, field, code in REFUSALS:
        response = what_if(charlie_client, prediction, changes)

        assert response.status_code == 400, (changes, response.content)
        assert response.json()["error"] == code, changes
        assert field in response.json()["fields"], changes
    assert AuditEvent.objects.filter(prediction=prediction, action="api_what_if").count() == 0


def test_what_if_recomputes_risk_tier_and_shap_synchronously(
    service_client,
    prediction_payload,
    model_version,
    alice_client,
    bob_client,
    django_capture_on_commit_callbacks,
):
    payload = prediction_payload(5)
    payload["patient"]["unit"] = "MICU"
    prediction = ingest(service_client, payload, django_capture_on_commit_callbacks)
    what_if(alice_client, prediction, {"map": 60})  # warm the explainer, as a worker process is

    started = time.perf_counter()
    response = what_if(alice_client, prediction, {"map": 45, "resp_rate": 30})
    seconds = time.perf_counter() - started

    assert response.status_code == 200, response.content
    body = response.json()
    serving = serving_model(model_version)
    values = {name: entry["value"] for name, entry in payload["features"].items()}
    expected = float(serving.predict_risk(serving.encode({**values, "map": 45, "resp_rate": 30})[None, :])[0])
    assert body["risk"] == pytest.approx(expected, abs=1e-9)
    assert body["tier"] == model_version.tier_for(expected)
    assert body["original"]["risk"] == pytest.approx(prediction.risk, abs=1e-9)
    assert body["delta"]["risk"] == pytest.approx(expected - prediction.risk, abs=1e-9)
    assert body["base_value"] + sum(f["shap"] for f in body["features"]) == pytest.approx(
        body["margin"], abs=1e-4
    )
    by_name = {f["name"]: f for f in body["features"]}
    assert by_name["map"]["changed"] and by_name["map"]["value"] == 45
    assert by_name["map"]["original_value"] == payload["features"]["map"]["value"]
    assert body["changes"]["map"] == {"from": payload["features"]["map"]["value"], "to": 45}
    assert seconds < 1.0
    assert AuditEvent.objects.filter(prediction=prediction, action="api_what_if").count() == 2
    assert what_if(bob_client, prediction, {"map": 45}).status_code == 404  # another unit
