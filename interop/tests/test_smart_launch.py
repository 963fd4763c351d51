"""SMART App Launch v2 (EHR launch) against the fake EHR, driven with the test client and urllib."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from types import SimpleNamespace

import pytest
from django.test import Client
from django.urls import reverse

from accounts import sessions
from interop.models import PractitionerMapping, RegisteredEhr
from interop.smart_views import SESSION_KEY
from patients.models import AuditEvent
from tests.fixtures.factories import engine_results_set, prediction_create

from .conftest import BASE, BOB_PRACTITIONER

CALLBACK = f"{BASE}/smart/callback"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _authorize(url: str) -> str:
    """What the EHR's authorization endpoint redirects the browser to (its Location)."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(url, timeout=5)  # noqa: S310 - the loopback fake EHR
    except urllib.error.HTTPError as exc:
        assert exc.code == 302, exc.read()
        return exc.headers["Location"]
    raise AssertionError("the authorization endpoint did not redirect")


@pytest.fixture
def smart(fake_ehr, ehr, mapped):
    fake_ehr.register_client("sightline", [CALLBACK])
    return fake_ehr


@pytest.fixture
def high(production_version):
    prediction = prediction_create(model_version=production_version, unit="MICU", risk=0.71)
    engine_results_set(prediction)
    return prediction


def _launch(client: Client, smart, patient_id: str, practitioner: str = "Practitioner/123"):
    launch_url = smart.launch_url(f"{BASE}/smart/launch", patient_id, practitioner=practitioner)
    response = client.get(launch_url.removeprefix(BASE))
    assert response.status_code == 302, response.content
    return response


def test_ehr_launch_opens_the_patients_alert_page(smart, high):
    client = Client()
    response = _launch(client, smart, high.patient.external_id)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(response["Location"]).query))
    assert response["Location"].startswith(f"{smart.base_url}/authorize?")
    assert query["scope"] == "launch openid fhirUser patient/*.rs"
    assert (query["code_challenge_method"], query["aud"], query["redirect_uri"]) == (
        "S256",
        smart.iss,
        CALLBACK,
    )
    assert query["state"] == client.session[SESSION_KEY]["state"]
    back = _authorize(response["Location"])
    assert back.startswith(CALLBACK + "?code=")
    landed = client.get(back.removeprefix(BASE))
    assert (landed.status_code, landed["Location"]) == (302, f"/alerts/{high.alert.pk}/")
    assert client.session.get_expiry_age() <= 3600  # the fake EHR's access token lives an hour
    page = client.get(landed["Location"])
    assert page.status_code == 200 and "71%" in page.content.decode()
    assert AuditEvent.objects.filter(
        action="smart_launch", patient=high.patient, user__username="alice"
    ).exists()
    # The code was spent: the same callback again finds no launch in progress.
    assert client.get(back.removeprefix(BASE)).json()["error"] == "no_launch_in_progress"


def test_the_session_ends_with_the_ehr_token_however_active_the_user(smart, high, settings, monkeypatch):
    settings.SMART_SESSION_MAX_SECONDS = 120  # shorter than the fake EHR's one-hour token
    client = Client()
    response = _launch(client, smart, high.patient.external_id)
    page = client.get(_authorize(response["Location"]).removeprefix(BASE))["Location"]
    ends = client.session.get_expiry_date()
    start = time.time()
    clock = SimpleNamespace(time=lambda: start)
    monkeypatch.setattr(sessions, "time", clock)  # the session middleware's clock only
    for offset in (30, 60, 90, 115):  # active all along: never idle
        clock.time = lambda offset=offset: start + offset
        assert client.get(page).status_code == 200, offset
    assert client.session.get_expiry_date() == ends  # activity does not push the end back
    assert client.get("/session/").json()["absolute"] <= 5
    clock.time = lambda: start + 125  # the token has expired
    late = client.get(page)
    login = f"{reverse('login')}?next={page.replace('/', '%2F')}"
    assert (late.status_code, late["Location"]) == (302, login)
    assert "_auth_user_id" not in client.session
    assert "time limit" in client.get(late["Location"]).content.decode()


def test_another_units_clinician_gets_404(smart, high):
    client = Client()
    response = _launch(client, smart, high.patient.external_id, practitioner=BOB_PRACTITIONER)
    landed = client.get(_authorize(response["Location"]).removeprefix(BASE))
    assert landed.status_code == 404
    assert AuditEvent.objects.filter(action="smart_launch_refused", user__username="bob").exists()


def test_an_unmapped_practitioner_is_refused(smart, high):
    client = Client()
    response = _launch(client, smart, high.patient.external_id, practitioner="Practitioner/999")
    landed = client.get(_authorize(response["Location"]).removeprefix(BASE))
    assert (landed.status_code, landed.json()["error"]) == (403, "user_not_mapped")
    assert "_auth_user_id" not in client.session


def test_an_id_token_signed_with_another_key_is_refused(smart, high):
    smart.id_token_key = "other"
    client = Client()
    response = _launch(client, smart, high.patient.external_id)
    landed = client.get(_authorize(response["Location"]).removeprefix(BASE))
    assert (landed.status_code, landed.json()["error"]) == (401, "invalid_id_token")
    assert "_auth_user_id" not in client.session


def test_a_forged_state_is_refused(smart, high):
    client = Client()
    response = _launch(client, smart, high.patient.external_id)
    back = _authorize(response["Location"])
    forged = back.replace("state=", "state=x")
    assert client.get(forged.removeprefix(BASE)).json()["error"] == "state_mismatch"


@pytest.mark.parametrize(
    ("query", "error", "status"),
    [
        ({"launch": "abc"}, "invalid", 400),
        ({"iss": "https://rogue.example/fhir", "launch": "abc"}, "unknown_issuer", 403),
    ],
)
def test_launch_refuses_missing_and_unregistered_iss(smart, client, query, error, status):
    response = client.get("/smart/launch", query)
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert smart.requests == []  # nothing was fetched for an iss no admin registered


def test_a_revoked_ehr_cannot_launch(smart, client, ehr):
    RegisteredEhr.objects.filter(pk=ehr.pk).update(revoked_at="2026-01-01T00:00:00Z")
    response = client.get("/smart/launch", {"iss": smart.iss, "launch": "abc"})
    assert (response.status_code, response.json()["error"]) == (403, "unknown_issuer")


def test_an_admin_account_is_never_signed_in_from_the_ehr(smart, high, ehr, charlie):
    PractitionerMapping.objects.create(ehr=ehr, fhir_user="Practitioner/900", user=charlie)
    client = Client()
    response = _launch(client, smart, high.patient.external_id, practitioner="Practitioner/900")
    landed = client.get(_authorize(response["Location"]).removeprefix(BASE))
    assert (landed.status_code, landed.json()["error"]) == (403, "user_not_mapped")
    assert "_auth_user_id" not in client.session


def test_endpoints_off_the_iss_origin_are_refused_unless_registered(smart, high, ehr):
    # The same fake EHR under another host name: another origin than the registered iss's.
    elsewhere = f"http://localhost:{smart.port}"
    smart.smart_configuration_overrides = {"token_endpoint": f"{elsewhere}/token"}
    response = Client().get("/smart/launch", {"iss": smart.iss, "launch": "abc"})
    assert (response.status_code, response.json()["error"]) == (502, "endpoint_not_registered")
    assert f"--smart-origin {elsewhere}" in response.json()["detail"]
    assert [r.path for r in smart.requests] == ["/fhir/.well-known/smart-configuration"]
    # An administrator registers that origin for this EHR: the whole launch goes through it.
    RegisteredEhr.objects.filter(pk=ehr.pk).update(smart_origins=[f"{elsewhere}"])
    client = Client()
    launched = _launch(client, smart, high.patient.external_id)
    landed = client.get(_authorize(launched["Location"]).removeprefix(BASE))
    assert (landed.status_code, landed["Location"]) == (302, f"/alerts/{high.alert.pk}/")
    assert len(smart.requests_to("/token")) == 1
