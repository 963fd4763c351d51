"""The full SMART EHR launch in a real browser: from the card's smart link, launched by the fake EHR,
through its authorization endpoint (PKCE), back to Sightline's callback and onto the alert page;
and the same launch by a clinician of another unit, refused with the usual 404.

Debian's Chromium driven by Playwright against pytest-django's live_server; the screenshot goes to
tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import pytest

from interop.models import PractitionerMapping, RegisteredEhr
from models_registry.models import ModelVersion
from tests.fixtures.browser import ARTIFACTS
from tests.fixtures.factories import engine_results_set, model_version_create, prediction_create

from .conftest import ALICE_PRACTITIONER, BOB_PRACTITIONER, hook_body

pytestmark = pytest.mark.browser


@pytest.fixture
def launchable(transactional_db, live_server, settings, fake_ehr, alice, bob):
    settings.CDS_PUBLIC_BASE_URL = live_server.url
    version = model_version_create()
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.PRODUCTION)
    prediction = prediction_create(model_version=version, unit="MICU", risk=0.71)
    engine_results_set(prediction)
    ehr = RegisteredEhr.objects.create(iss=fake_ehr.iss, jwks=fake_ehr.jwks(), client_id="sightline")
    PractitionerMapping.objects.create(ehr=ehr, fhir_user=ALICE_PRACTITIONER, user=alice)
    PractitionerMapping.objects.create(ehr=ehr, fhir_user=BOB_PRACTITIONER, user=bob)
    fake_ehr.register_client("sightline", [f"{live_server.url}/smart/callback"])
    return prediction


def _card_link(client, fake_ehr, live_server, prediction) -> str:
    """The smart link of the card the EHR would show (the EHR launches it)."""
    path = "/cds-services/icu-mortality-30d"
    token = fake_ehr.cds_jwt(live_server.url + path)
    response = client.post(
        path,
        hook_body(prediction.patient.external_id),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    (card,) = response.json()["cards"]
    (link,) = card["links"]
    assert link["type"] == "smart"
    return link["url"]


def test_launch_from_the_card_opens_the_alert_page(browser, live_server, fake_ehr, launchable, client):
    app_launch = _card_link(client, fake_ehr, live_server, launchable)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(fake_ehr.launch_url(app_launch, launchable.patient.external_id))
        page.wait_for_url(f"{live_server.url}/alerts/{launchable.alert.pk}/")
        assert page.locator(".risk-value").inner_text() == "71%"
        assert "calibrated range 64%–76%" in page.locator("#risk-interval").inner_text()
        assert launchable.patient.display_name in page.locator("h1").inner_text()
        paths = [r.path for r in fake_ehr.requests]
        discovery = "/fhir/.well-known/smart-configuration"
        assert paths == [discovery, "/authorize", discovery, "/token", "/jwks.json"]
        page.screenshot(path=str(ARTIFACTS / "smart-launch-alert.png"))
        assert errors == []
    finally:
        context.close()


def test_another_units_clinician_gets_404(browser, live_server, fake_ehr, launchable, client):
    app_launch = _card_link(client, fake_ehr, live_server, launchable)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        url = fake_ehr.launch_url(app_launch, launchable.patient.external_id, practitioner=BOB_PRACTITIONER)
        response = page.goto(url)
        assert response.status == 404
        assert page.url.startswith(f"{live_server.url}/smart/callback?")
        assert "71%" not in page.content()
    finally:
        context.close()
