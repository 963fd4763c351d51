"""The clinician's path through a real browser: log in, worklist, a high alert with its waterfall,
source links and "not measured", dismiss with a reason; a low-tier score shows only the cue.

Debian's Chromium driven by Playwright against pytest-django's live_server. Screenshots go to
tests/artifacts/ (git-ignored) for a person to look at.
"""

import os
import shutil
from pathlib import Path

import pytest

from clinician_ui.models import AlertAction, AuditEvent
from clinician_ui.tests.factories import model_version_create, prediction_create
from explanations.models import Alert
from tests.fixtures.people import PASSWORD

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls from a thread
# with a running loop unless told that this test process knows what it is doing.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required in CI at {CHROMIUM} (apt-get install chromium).")
        pytest.skip(f"Chromium not found at {CHROMIUM}; apt-get install chromium to run browser tests.")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def ward(transactional_db, alice, bob):
    """Alice's MICU: a high alert, a medium alert and a low-tier patient; and one CCU alert."""
    version = model_version_create()
    high = prediction_create(model_version=version, unit="MICU", risk=0.78, simulated=True)
    medium = prediction_create(model_version=version, unit="MICU", risk=0.34)
    low = prediction_create(model_version=version, unit="MICU", risk=0.06)
    ccu = prediction_create(model_version=version, unit="CCU", risk=0.91)
    return {"high": high, "medium": medium, "low": low, "ccu": ccu}


def log_in(page, base_url: str, username: str, screenshot: str | None = None) -> None:
    page.goto(base_url + "/")
    assert "/login/" in page.url
    if screenshot:
        page.screenshot(path=str(ARTIFACTS / screenshot))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/")


def test_alice_reviews_and_dismisses_a_high_alert(browser, live_server, ward):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        log_in(page, live_server.url, "alice", screenshot="login.png")

        # Worklist: her two MICU alerts, high first, never the CCU one; the low-tier patient below.
        rows = page.locator(".worklist-table tbody tr")
        assert rows.count() == 2
        assert "High" in rows.nth(0).inner_text()
        assert "78%" in rows.nth(0).inner_text()
        assert "Medium" in rows.nth(1).inner_text()
        assert ward["ccu"].patient.display_name not in page.content()
        assert page.locator(".low-list li").count() == 1
        # Keyboard users get the skip link first.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
        page.screenshot(path=str(ARTIFACTS / "worklist.png"), full_page=True)

        # The high alert: waterfall drawn by Plotly from the JSON view.
        rows.nth(0).locator("a").click()
        page.wait_for_url(f"{live_server.url}/alerts/{ward['high'].alert.pk}/")
        page.wait_for_selector("#waterfall.js-plotly-plot .waterfalllayer .point", timeout=15_000)
        assert page.locator("#waterfall .waterfalllayer .point").count() == 8  # base, 6 inputs, output
        assert "Simulated demo data" in page.locator(".banner-simulated").inner_text()

        source = page.locator('a[href="https://ehr.example.org/Observation/lab-998"]')
        assert source.get_attribute("target") == "_blank"
        assert source.get_attribute("rel") == "noopener noreferrer"
        not_measured = page.locator("tr.not-measured")
        assert not_measured.count() == 1
        assert "Urine output" in not_measured.inner_text()
        assert "not measured" in not_measured.inner_text()
        page.screenshot(path=str(ARTIFACTS / "alert_high.png"), full_page=True)

        # Dismiss with a reason; a double click is still one action.
        page.check("input[name=action][value=dismiss]")
        page.select_option("select[name=reason]", "not_clinically_relevant")
        page.fill("textarea[name=comment]", "Lactate from before fluid resuscitation.")
        page.dblclick("#action-form button[type=submit]")
        page.wait_for_selector("#action-status:has-text('Recorded')")
        assert "Not clinically relevant for this patient" in page.locator("#action-list").inner_text()
        assert page.locator("#alert-state").inner_text() == "Actioned"
        assert AlertAction.objects.filter(alert=ward["high"].alert).count() == 1
        record = AlertAction.objects.get(alert=ward["high"].alert)
        assert (record.user.username, record.action, record.reason) == (
            "alice",
            "dismiss",
            "not_clinically_relevant",
        )
        assert record.seconds_to_decision > 0
        assert Alert.objects.get(pk=ward["high"].alert.pk).state == Alert.State.ACTIONED
        page.screenshot(path=str(ARTIFACTS / "alert_dismissed.png"), full_page=True)

        # After a reload the action is in the server-rendered list.
        page.reload()
        assert "Lactate from before fluid resuscitation." in page.locator("#action-list").inner_text()
        assert not errors, errors
    finally:
        context.close()


def test_low_tier_score_shows_only_the_cue_until_asked(browser, live_server, ward):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        log_in(page, live_server.url, "alice")
        page.click(".low-list a")
        page.wait_for_url(f"{live_server.url}/predictions/{ward['low'].pk}/")
        cue = page.locator(".cue").inner_text()
        assert "6%" in cue
        assert "Largest factor: Lactate" in cue
        assert "lowers risk" in cue
        assert page.locator("#waterfall").count() == 0
        assert page.locator(".feature-table").count() == 0
        page.screenshot(path=str(ARTIFACTS / "low_tier_cue.png"), full_page=True)

        page.click("text=Show full explanation")
        page.wait_for_selector("#waterfall.js-plotly-plot .waterfalllayer .point", timeout=15_000)
        assert page.locator(".feature-table").count() == 1
        assert AuditEvent.objects.filter(action="expand_low_tier", user__username="alice").count() == 1
    finally:
        context.close()


def test_alert_page_at_tablet_width(browser, live_server, ward):
    context = browser.new_context(viewport={"width": 820, "height": 1180})
    page = context.new_page()
    try:
        log_in(page, live_server.url, "alice")
        page.goto(f"{live_server.url}/alerts/{ward['medium'].alert.pk}/")
        page.wait_for_selector("#waterfall.js-plotly-plot .waterfalllayer .point", timeout=15_000)
        # One column: nothing wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= 820
        page.screenshot(path=str(ARTIFACTS / "alert_tablet.png"), full_page=True)
    finally:
        context.close()
