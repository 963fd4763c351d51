"""Content-Security-Policy (issue 15, finding 10) in a real browser: every main page loads its
scripts, styles and charts under the strict policy with no violation reported, and an injected
inline script is refused."""

import pytest
from django.core.cache import cache

from patients.models import Alert
from tests.fixtures.browser import csp_violations, log_in

pytestmark = pytest.mark.browser


@pytest.fixture
def explained_alert(transactional_db, model_version, prediction_payload, alice, charlie):
    """A MICU high alert ingested and explained by the real engine (tasks run in-process)."""
    from explanations.services import prediction_ingest

    cache.clear()
    payload = prediction_payload(9)
    payload["patient"]["unit"] = "MICU"
    prediction = prediction_ingest(payload=payload, source="rest").prediction
    assert Alert.objects.filter(prediction=prediction).exists()
    yield prediction
    cache.clear()


def _visit(page, url: str, ready: str) -> None:
    page.goto(url)
    page.wait_for_selector(ready, timeout=20_000)
    page.wait_for_timeout(300)  # let late scripts and styles run


def test_main_pages_report_no_csp_violation(browser, live_server, explained_alert):
    base = live_server.url
    version = explained_alert.model_version
    card = f"/models/{version.registered_model.name}/versions/{version.version}/"
    clinician = browser.new_context(viewport={"width": 1280, "height": 900})
    admin = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = clinician.new_page()
        violations = csp_violations(page)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        log_in(page, base, "alice")
        page.wait_for_selector(".worklist-table tbody tr")
        policy = page.evaluate("fetch('/').then(r => r.headers.get('content-security-policy'))")
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        _visit(page, f"{base}/alerts/{explained_alert.alert.pk}/", "#waterfall.js-plotly-plot")
        _visit(page, f"{base}/predictions/{explained_alert.pk}/", "main")

        page = admin.new_page()
        admin_violations = csp_violations(page)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        log_in(page, base, "charlie")
        _visit(page, base + "/models/", "main")
        _visit(page, base + card, "#roc-chart.js-plotly-plot .scatterlayer .trace")
        _visit(page, base + "/monitoring/", "#monitoring-form")
        _visit(page, base + "/audit/", "main")
        _visit(page, base + "/admin/", "#content")
        _visit(page, base + "/api/docs/", "#swagger-ui .opblock")

        assert violations == []
        assert admin_violations == []
        assert errors == []
    finally:
        clinician.close()
        admin.close()


def test_an_injected_inline_script_is_refused(browser, live_server, explained_alert):
    context = browser.new_context()
    try:
        page = context.new_page()
        violations = csp_violations(page)
        log_in(page, live_server.url, "alice")
        page.evaluate(
            """() => { const s = document.createElement("script");
                       s.textContent = "window.__ran = true"; document.body.appendChild(s); }"""
        )
        page.wait_for_timeout(200)
        assert page.evaluate("typeof window.__ran") == "undefined"
        assert any("script-src" in v for v in violations)
    finally:
        context.close()
