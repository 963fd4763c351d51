"""The alert page with real engine results in a real browser: a high alert explained by the real
engine (uncertainty, similar patients, stability, what-if) and an abstaining one, on the worklist
and the alert page, at 1280x800 and on a tablet.

Debian's Chromium driven by Playwright against pytest-django's live_server. Screenshots go to
tests/artifacts/ (git-ignored) for a person to look at.
"""

import pytest

from engine.headline import shown_percent
from tests.fixtures.browser import ARTIFACTS, log_in

pytestmark = pytest.mark.browser


@pytest.fixture
def explained(transactional_db, model_version, prediction_payload, alice):
    """Two MICU alerts ingested and explained by the real engine (the on-commit enqueue runs the
    tasks in-process): demo patient 9 (high tier) and demo patient 19, whose values are far from
    the reference patients, so the model abstains."""
    from explanations.models import Explanation
    from explanations.services import prediction_ingest

    made = {}
    for name, index in (("high", 9), ("abstains", 19)):
        payload = prediction_payload(index)
        payload["patient"]["unit"] = "MICU"
        made[name] = prediction_ingest(payload=payload, source="rest").prediction
    for prediction in made.values():
        assert Explanation.objects.get(prediction=prediction).status == Explanation.Status.READY
    assert Explanation.objects.get(prediction=made["abstains"]).abstain is True
    return made


def test_high_alert_shows_uncertainty_similar_patients_stability_and_what_if(browser, live_server, explained):
    from explanations.services import prediction_what_if

    high = explained["high"]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        log_in(page, live_server.url, "alice")
        page.goto(f"{live_server.url}/alerts/{high.alert.pk}/")
        explanation = high.explanation
        explanation.refresh_from_db()
        low, top = explanation.uncertainty["interval"]["low"], explanation.uncertainty["interval"]["high"]
        assert page.locator("#risk-interval").inner_text() == (
            f"calibrated range {100 * low:.0f}%–{100 * top:.0f}%"
        )
        # The headline says what the risk is a risk of, and reconciles it with its calibrated range.
        assert page.locator("#risk-meaning").inner_text().startswith("risk of ")
        outside = not round(100 * low) <= round(100 * high.risk) <= round(100 * top)
        assert page.locator("#headline-correction").count() == (1 if outside else 0)
        page.screenshot(path=str(ARTIFACTS / "alert_engine_1280.png"))
        assert (
            "reference-set patients the model scored between"
            in page.locator("#calibration-note").inner_text()
        )
        assert page.locator("#similar-summary").inner_text() == explanation.similar_patients["summary"]
        assert page.locator(".similar-table tbody tr").count() == 10
        badge = page.locator("#stability-badge").inner_text()
        assert badge.endswith(f"explanation · {round(100 * explanation.stability['agreement'])}% agreement")
        assert "Age" in page.locator("#whatif-fixed").inner_text()

        # Care decisions and composite scores are not offered, and the page says why.
        fixed = page.locator("#whatif-fixed").inner_text()
        assert "Do-not-resuscitate order on day 1" in fixed and "goals-of-care decision" in fixed
        assert "APACHE III acute physiology score" in fixed and "composite score" in fixed
        assert page.locator("#wi-dnr_day1").count() == page.locator("#wi-apache_aps").count() == 0

        # What-if, from the keyboard: a lower mean arterial pressure, Enter recomputes.
        expected = prediction_what_if(prediction=high, changes={"map": 55})
        page.fill("#wi-map", "55")
        page.press("#wi-map", "Enter")
        page.wait_for_selector("#whatif-result:not([hidden])")
        risk_line = page.locator("#whatif-risk").inner_text()
        assert risk_line.startswith(f"Hypothetical risk {100 * expected['risk']:.0f}%, ")
        assert f"(this score: {100 * high.risk:.0f}%" in risk_line
        # The change is the difference of the two risks as shown, not of the unrounded risks.
        change = shown_percent(expected["risk"]) - shown_percent(high.risk)
        said = (
            "no change"
            if change == 0
            else f"{'+' if change > 0 else chr(0x2212)}{abs(change)} percentage points"
        )
        assert risk_line.endswith(f"; {said}).")
        changed = page.locator("#whatif-rows tr.whatif-changed").inner_text()
        assert "Mean arterial pressure" in changed and "→ 55" in changed
        page.screenshot(path=str(ARTIFACTS / "alert_engine_whatif.png"), full_page=True)

        # Out of range: the API's message is shown next to the field, nothing else changes.
        page.fill("#wi-map", "999")
        page.click("#whatif-form button[type=submit]")
        page.wait_for_selector("#wi-map-error:has-text('outside the plausible range')")
        assert page.get_attribute("#wi-map", "aria-invalid") == "true"
        assert not errors, errors
    finally:
        context.close()

    tablet = browser.new_context(viewport={"width": 820, "height": 1180})
    try:
        page = tablet.new_page()
        log_in(page, live_server.url, "alice")
        page.goto(f"{live_server.url}/alerts/{high.alert.pk}/")
        page.screenshot(path=str(ARTIFACTS / "alert_engine_tablet_top.png"))
        page.screenshot(path=str(ARTIFACTS / "alert_engine_tablet.png"), full_page=True)
        too_wide = page.evaluate(
            "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 821)"
            ".map(e => e.tagName + '.' + e.className + '#' + e.id).slice(0, 8)"
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 820, too_wide
        # The actions are on the first screen, before the explanation, and first in the tab order.
        assert page.locator("#action-form").bounding_box()["y"] < 1180
        assert (
            page.locator("#action-form").bounding_box()["y"] < page.locator("#why-title").bounding_box()["y"]
        )
        assert page.evaluate(
            "!!(document.querySelector('#action-form').compareDocumentPosition("
            "document.querySelector('#whatif-form')) & Node.DOCUMENT_POSITION_FOLLOWING)"
        )
        # Touch targets of at least 44 x 44 px for the actions, the chart's units and the what-if.
        for selector in (
            "#action-form label.radio",
            "#action-form button[type=submit]",
            "#action-reason",
            "#waterfall-units",
            "#whatif-form input[data-kind]",
            "#whatif-form select",  # none in the demo bundle: its choices are not care decisions
            "#whatif-form button",
        ):
            assert page.locator(selector).count() or selector == "#whatif-form select", selector
            for box in (
                page.locator(selector).nth(i).bounding_box() for i in range(page.locator(selector).count())
            ):
                assert box["height"] >= 44 and box["width"] >= 44, (selector, box)
        # The what-if result on a tablet, for a person to look at.
        page.fill("#wi-map", "55")
        page.click("#whatif-form button[type=submit]")
        page.wait_for_selector("#whatif-result:not([hidden])")
        assert page.evaluate("document.documentElement.scrollWidth") <= 820
        page.locator("#what-if").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "alert_whatif_tablet.png"))
    finally:
        tablet.close()


def test_abstaining_alert_shows_the_abstention_not_a_confident_risk(browser, live_server, explained):
    abstains = explained["abstains"]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        log_in(page, live_server.url, "alice")
        # The worklist row says so in words, before the alert is opened.
        row = page.locator(f'#alerts-body tr[data-key="alert-{abstains.alert.pk}"]').inner_text()
        assert "Model abstains" in row
        assert f"output {100 * abstains.risk:.0f}%, not reliable" in row
        high_row = page.locator(f'#alerts-body tr[data-key="alert-{explained["high"].alert.pk}"]')
        assert "Model abstains" not in high_row.inner_text()
        page.screenshot(path=str(ARTIFACTS / "worklist_abstains.png"))
        page.goto(f"{live_server.url}/alerts/{abstains.alert.pk}/")
        assert page.locator(".risk-box .risk-value").inner_text().endswith("Model abstains")
        assert page.locator("#risk-unreliable").inner_text() == (
            f"Model output {100 * abstains.risk:.0f}%: not reliable for this patient"
        )
        abstention = page.locator("#abstention").inner_text()
        assert "The model abstains for this patient." in abstention
        assert "not validated on patients like this" in abstention
        assert page.locator("#risk-interval").count() == 0
        # The reason comes before the main factors and the chart, which say they are secondary.
        assert page.evaluate(
            "['#bedside-summary', '#waterfall'].every(s => document.querySelector('#abstention')"
            ".compareDocumentPosition(document.querySelector(s)) & Node.DOCUMENT_POSITION_FOLLOWING)"
        )
        assert "secondary: the model abstains" in page.locator("#bedside-title").inner_text()
        # Abstention is its own state: the neutral badge, no tier badge or tier colour anywhere on
        # this score (the risk box, the patient's scores).
        assert "Abstains" in page.locator(".risk-box .tier-abstains").inner_text()
        assert page.locator(".risk-box.risk-abstains").count() == 1
        assert page.locator(".risk-box.risk-high, .risk-box.risk-medium, .risk-box .tier-high").count() == 0
        assert page.locator(".history-current .tier-abstains").count() == 1
        assert page.locator(".history-current .tier-high, .history-current .tier-medium").count() == 0
        # "How sure" says its range and stability describe the output only, and the stability badge
        # is the abstention's neutral colour, never the green of a reassuring "stable".
        assert "describe its output only" in page.locator("#uncertainty-abstains").inner_text()
        badge = page.locator("#stability-badge")
        assert "(of the unreliable output)" in badge.inner_text()
        assert "stability-secondary" in badge.get_attribute("class")
        page.screenshot(path=str(ARTIFACTS / "alert_abstains.png"), full_page=True)
    finally:
        context.close()

    tablet = browser.new_context(viewport={"width": 820, "height": 1180})
    try:
        page = tablet.new_page()
        log_in(page, live_server.url, "alice")
        page.goto(f"{live_server.url}/alerts/{abstains.alert.pk}/")
        assert page.locator(".risk-box .tier-high").count() == 0
        # The reason and the actions are on the first screen.
        assert page.locator("#abstention").bounding_box()["y"] < 1180
        assert page.locator("#action-form").bounding_box()["y"] < 1180
        assert page.evaluate("document.documentElement.scrollWidth") <= 820
        page.screenshot(path=str(ARTIFACTS / "alert_abstains_tablet.png"))
        page.screenshot(path=str(ARTIFACTS / "alert_abstains_tablet_full.png"), full_page=True)
    finally:
        tablet.close()
