"""Every JWT fault on a CDS Hooks call is a 401 with the section-7 body, and stores nothing."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.utils import timezone

from interop.ehr_registry import jti_prune, jti_seen
from interop.models import CdsCard, CdsCardShown, RegisteredEhr, SeenJti
from patients.models import AlertAction, AuditEvent, Prediction
from tests.fixtures.factories import engine_results_set, prediction_create

from .conftest import BASE, hook_body

SERVICE = "icu-mortality-30d"
URL = f"{BASE}/cds-services/{SERVICE}"


@pytest.fixture
def high(production_version, mapped):
    prediction = prediction_create(model_version=production_version, unit="MICU", risk=0.71)
    engine_results_set(prediction)
    return prediction


def _stored() -> tuple[int, ...]:
    return (
        SeenJti.objects.count(),
        CdsCard.objects.count(),
        CdsCardShown.objects.count(),
        AuditEvent.objects.count(),
        AlertAction.objects.count(),
        Prediction.objects.count(),
    )


FAULTS = {
    "wrong key": (lambda ehr: ehr.cds_jwt(URL, key="other"), "bad_signature"),
    "alg none": (lambda ehr: ehr.alg_none_jwt(URL), "unsigned_token"),
    "HS256 with the public key": (lambda ehr: ehr.hs256_public_key_jwt(URL), "symmetric_algorithm"),
    "expired": (lambda ehr: ehr.cds_jwt(URL, iat_offset=-400, exp_in=200), "expired_token"),
    "wrong aud": (lambda ehr: ehr.cds_jwt(f"{BASE}/cds-services/other-model"), "wrong_audience"),
    "unknown iss": (lambda ehr: ehr.cds_jwt(URL, iss="https://rogue.example/fhir"), "unknown_issuer"),
    "no jti": (lambda ehr: ehr.cds_jwt(URL, omit=("jti",)), "missing_claim"),
    "lives too long": (lambda ehr: ehr.cds_jwt(URL, exp_in=3600), "lifetime_too_long"),
    "not a JWT": (lambda ehr: "not-a-jwt", "malformed_token"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_jwt_fault_is_401_and_stores_nothing(cds, high, fault):
    make, code = FAULTS[fault]
    before = _stored()
    response = cds.call(SERVICE, hook_body(high.patient.external_id), token=make(cds.fake_ehr))
    assert response.status_code == 401
    body = response.json()
    assert (body["error"], set(body)) == (code, {"error", "detail", "fields"})
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert _stored() == before


def test_no_authorization_header_is_401(cds, high):
    response = cds.client.post(
        f"/cds-services/{SERVICE}", hook_body(high.patient.external_id), content_type="application/json"
    )
    assert (response.status_code, response.json()["error"]) == (401, "missing_token")
    assert _stored() == (0, 0, 0, 0, 0, 1)


def test_a_replayed_jti_is_401_and_the_replay_stores_nothing(cds, high):
    token = cds.fake_ehr.cds_jwt(URL)
    assert cds.call(SERVICE, hook_body(high.patient.external_id), token=token).status_code == 200
    before = _stored()
    replay = cds.call(SERVICE, hook_body(high.patient.external_id), token=token)
    assert (replay.status_code, replay.json()["error"]) == (401, "replayed_token")
    assert _stored() == before


def test_a_revoked_ehr_is_401(cds, high, ehr):
    RegisteredEhr.objects.filter(pk=ehr.pk).update(revoked_at=timezone.now())
    before = _stored()
    response = cds.call(SERVICE, hook_body(high.patient.external_id))
    assert (response.status_code, response.json()["error"]) == (401, "revoked_issuer")
    assert _stored() == before


def test_an_algorithm_the_ehr_was_not_registered_with_is_401(cds, high, ehr):
    RegisteredEhr.objects.filter(pk=ehr.pk).update(algorithms=["RS384"])
    response = cds.call(
        SERVICE, hook_body(high.patient.external_id), token=cds.fake_ehr.cds_jwt(URL, alg="ES384")
    )
    assert (response.status_code, response.json()["error"]) == (401, "algorithm_not_allowed")
    ok = cds.call(SERVICE, hook_body(high.patient.external_id), token=cds.fake_ehr.cds_jwt(URL, alg="RS384"))
    assert ok.status_code == 200


@pytest.mark.parametrize("aud", [URL, f"{URL}/feedback"], ids=["service URL", "feedback URL"])
def test_feedback_takes_the_service_url_or_its_own_as_aud(cds, high, aud):
    (card,) = cds.call(SERVICE, hook_body(high.patient.external_id)).json()["cards"]
    item = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": timezone.now().isoformat()}
    response = cds.feedback(SERVICE, {"feedback": [item]}, token=cds.fake_ehr.cds_jwt(aud))
    assert response.json() == {"recorded": 1, "items": 1}
    assert AlertAction.objects.get().action == "accept"


@pytest.mark.parametrize(
    "aud", [f"{BASE}/cds-services/other-model", f"{BASE}/cds-services/other-model/feedback"]
)
def test_feedback_refuses_another_services_url_and_stores_nothing(cds, high, aud):
    before = _stored()
    response = cds.feedback(SERVICE, {"feedback": []}, token=cds.fake_ehr.cds_jwt(aud))
    assert (response.status_code, response.json()["error"]) == (401, "wrong_audience")
    assert _stored() == before


@pytest.mark.django_db(transaction=True)
def test_the_replay_check_is_atomic_across_connections(postgres):
    """Two threads (two database connections) record the same jti at once: exactly one wins."""
    exp = timezone.now().timestamp() + 300
    results: list[bool] = []
    barrier = threading.Barrier(2)

    def record() -> None:
        try:
            barrier.wait()
            results.append(jti_seen("https://ehr.example/fhir", "same-jti", exp))
        finally:
            connection.close()

    threads = [threading.Thread(target=record) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]
    assert SeenJti.objects.count() == 1


def test_expired_jti_rows_are_pruned(db):
    now = timezone.now()
    jti_seen("https://ehr.example/fhir", "old", now.timestamp() - 3600)
    jti_seen("https://ehr.example/fhir", "live", now.timestamp() + 300)
    assert jti_prune(now=now) == 1
    assert list(SeenJti.objects.values_list("jti", flat=True)) == ["live"]


def test_without_a_public_base_url_the_request_host_is_the_audience(cds, high, settings):
    settings.CDS_PUBLIC_BASE_URL = ""
    response = cds.call(SERVICE, hook_body(high.patient.external_id))  # aud http://testserver/...
    assert response.status_code == 200
    assert response.json()["cards"][0]["links"][0]["url"] == "http://testserver/smart/launch"


def test_production_without_a_public_base_url_answers_503_and_stores_nothing(cds, high, settings):
    settings.CDS_PUBLIC_BASE_URL = ""
    settings.PRODUCTION = True
    before = _stored()
    response = cds.call(SERVICE, hook_body(high.patient.external_id))
    assert (response.status_code, response.json()["error"]) == (503, "not_configured")
    launch = cds.client.get("/smart/launch", {"iss": cds.fake_ehr.iss, "launch": "x"})
    assert (launch.status_code, launch.json()["error"]) == (503, "not_configured")
    assert _stored() == before and cds.fake_ehr.requests == []
