"""The clinician's path through a real browser: log in, worklist, a high alert with its waterfall,
source links and "not measured", dismiss with a reason; a low-tier score shows only the cue.

Debian's Chromium driven by Playwright against pytest-django's live_server. Screenshots go to
tests/artifacts/ (git-ignored) for a person to look at.
"""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from clinician_ui.exports import patient_pseudonym
from patients.models import Alert, AlertAction, AuditEvent
from tests.fixtures.browser import ARTIFACTS, log_in
from tests.fixtures.factories import (
    feature_payload,
    model_version_create,
    patient_create,
    prediction_create,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def ward(transactional_db, alice, bob):
    """Alice's MICU: a high alert, a medium alert and a low-tier patient; and one CCU alert."""
    version = model_version_create()
    high = prediction_create(model_version=version, unit="MICU", risk=0.78, simulated=True)
    medium = prediction_create(model_version=version, unit="MICU", risk=0.34)
    low = prediction_create(model_version=version, unit="MICU", risk=0.06)
    ccu = prediction_create(model_version=version, unit="CCU", risk=0.91)
    return {"high": high, "medium": medium, "low": low, "ccu": ccu}


def test_alice_reviews_and_dismisses_a_high_alert(browser, live_server, ward, charlie):
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
        assert "Simulated data" in page.locator(".banner-simulated").inner_text()

        source = page.locator('.feature-table a[href="https://ehr.example.org/Observation/lab-998"]')
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
        assert page.locator("#alert-state").inner_text() == "Dismissed"
        assert page.locator(".risk-box .state").inner_text() == "Dismissed"
        assert AlertAction.objects.filter(alert=ward["high"].alert).count() == 1
        record = AlertAction.objects.get(alert=ward["high"].alert)
        assert (record.user.username, record.action, record.reason) == (
            "alice",
            "dismiss",
            "not_clinically_relevant",
        )
        assert record.seconds_to_decision > 0
        assert Alert.objects.get(pk=ward["high"].alert.pk).state == Alert.State.DISMISSED
        page.screenshot(path=str(ARTIFACTS / "alert_dismissed.png"), full_page=True)

        # After a reload the action is in the server-rendered list.
        page.reload()
        assert "Lactate from before fluid resuscitation." in page.locator("#action-list").inner_text()
        assert not errors, errors
    finally:
        context.close()

    # Charlie, an admin, finds the dismiss with its reason in the outcome-study export.
    admin = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = admin.new_page()
        log_in(page, live_server.url, "charlie")
        page.click("nav >> text=Audit log")
        page.wait_for_url(f"{live_server.url}/audit/")
        assert "alert_dismiss" in page.locator(".audit-table").inner_text()
        page.screenshot(path=str(ARTIFACTS / "audit_log.png"), full_page=True)
        today = timezone.now().date().isoformat()
        response = admin.request.get(
            f"{live_server.url}/api/v1/exports/overrides/?from={today}&to={today}&format=csv"
        )
        assert response.status == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        rows = list(csv.DictReader(io.StringIO(response.text())))
        (dismiss,) = [r for r in rows if r["action"] == "dismiss"]
        assert int(dismiss["alert_id"]) == ward["high"].alert.pk
        assert (dismiss["reason"], dismiss["reason_label"], dismiss["user_role"]) == (
            "not_clinically_relevant",
            "Not clinically relevant for this patient",
            "clinician",
        )
        assert dismiss["comment"] == "Lactate from before fluid resuscitation."
        assert dismiss["patient_pseudonym"] == patient_pseudonym(ward["high"].patient.external_id)
        assert ward["high"].patient.external_id not in response.text()
        assert float(dismiss["seconds_to_decision"]) == record.seconds_to_decision
    finally:
        admin.close()


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


XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=1">'


def test_worklist_updates_in_place_without_losing_the_clinicians_place(browser, live_server, ward, settings):
    settings.WORKLIST_POLL_SECONDS = 1
    version = ward["high"].model_version
    now = timezone.now()
    for i in range(24):
        # Names of every length (some wrap): rows above the clinician's change height when the page
        # brings their "fired ... ago" texts up to date, after the new rows are in.
        patient = patient_create(unit="MICU", display_name=f"Patient, Test {10 ** (i % 7) + i}")
        # Some patients have a history, so the sparklines and changes have something to show.
        for hours, risk in ((9, 0.12 + i / 90), (6, 0.2 + i / 60), (3, 0.45 - i / 100))[: i % 4]:
            prediction_create(
                model_version=version, patient=patient, risk=risk, scored_at=now - timedelta(hours=hours)
            )
        prediction_create(model_version=version, patient=patient, risk=0.30 + i / 100)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    polls = []
    page.on("response", lambda response: polls.append(response) if "/worklist.json" in response.url else None)
    try:
        log_in(page, live_server.url, "alice")
        rows = page.locator("#alerts-body tr")
        assert rows.count() == 26
        page.evaluate("window.__notReloaded = true")
        # Nothing changed yet: the polls answer 304, and the page keeps its rows.
        page.wait_for_function(
            "() => document.querySelector('#worklist').hasAttribute('data-last-poll')", timeout=5_000
        )
        assert [poll.status for poll in polls] == [304] * len(polls) and polls
        list_version = page.get_attribute("#worklist", "data-version")
        # A row that will not change is kept as is (the same element, never re-rendered); and
        # its "fired ... ago" text is kept current by the page between polls.
        kept = f'#alerts-body tr[data-key="alert-{ward["high"].alert.pk}"]'
        page.evaluate(f"document.querySelector('{kept}').__kept = true")
        page.evaluate(
            f"document.querySelector('{kept} time').setAttribute('datetime',"
            " new Date(Date.now() - (3 * 3600 + 5 * 60 + 20) * 1000).toISOString())"
        )
        # An unsaved choice in the filter form, then the keyboard focus on a row far down the list.
        page.select_option("#filter-tier", "high")
        target = rows.nth(15).locator("a")
        href = target.get_attribute("href")
        target.focus()
        # In mid-screen, wherever the rows' heights put it (names wrap differently with longer names).
        target.evaluate("el => el.closest('tr').scrollIntoView({block: 'center'})")
        top_before = target.bounding_box()["y"]
        assert 100 < top_before < 700 and page.evaluate("window.scrollY") > 0
        first_poll = page.get_attribute("#worklist", "data-last-poll")

        # A new high alert lands above everything, and another row's state changes.
        new = prediction_create(model_version=version, unit="MICU", risk=0.97)
        Alert.objects.filter(pk=ward["medium"].alert.pk).update(state=Alert.State.ACKNOWLEDGED)
        page.wait_for_function(
            "() => document.querySelectorAll('#alerts-body tr').length === 27", timeout=10_000
        )
        page.wait_for_function(
            "() => document.querySelector('#alerts-body tr').textContent.indexOf('97%') !== -1", timeout=5_000
        )

        assert page.evaluate("window.__notReloaded") is True
        assert page.get_attribute("#worklist", "data-last-poll") != first_poll
        assert page.locator("#alerts-count").inner_text() == "27"
        first = rows.nth(0)
        assert new.patient.display_name in first.inner_text()
        assert "first score" in first.inner_text()
        assert "row-fresh" in first.get_attribute("class")
        medium_row = page.locator(f'#alerts-body tr[data-key="alert-{ward["medium"].alert.pk}"]')
        assert "Acknowledged" in medium_row.inner_text()
        # The changes came as deltas on the page's version (one, or two if a poll fell between
        # them): html for the new and the changed row only, every other row by its key.
        deltas = [poll.json() for poll in polls if poll.status == 200]
        assert [delta["base"] for delta in deltas] == [list_version] + [d["version"] for d in deltas[:-1]]
        sent = [row["key"] for delta in deltas for row in delta["alerts"] if "html" in row]
        assert sorted(sent) == sorted([f"alert-{new.alert.pk}", f"alert-{ward['medium'].alert.pk}"])
        assert len(deltas[-1]["alerts"]) == 27
        assert page.evaluate(f"document.querySelector('{kept}').__kept") is True
        assert page.locator(f"{kept} time").inner_text() == "3\xa0hours, 5\xa0minutes ago"
        # Focus, place on screen and the unsaved filter are where the clinician left them.
        assert page.evaluate("document.activeElement.getAttribute('href')") == href
        assert abs(page.locator(f'#alerts-body a[href="{href}"]').bounding_box()["y"] - top_before) <= 2
        assert page.input_value("#filter-tier") == "high"
        announced = page.locator("#worklist-announcer").inner_text()
        assert announced.startswith("1 new alert: high tier, ")
        assert new.patient.display_name in announced
        assert not errors, errors
        page.screenshot(path=str(ARTIFACTS / "worklist_live.png"))
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(ARTIFACTS / "worklist_1280.png"))
    finally:
        context.close()


def test_worklist_and_alert_page_at_tablet_width(browser, live_server, ward):
    version = ward["high"].model_version
    patient = ward["high"].patient
    earlier = timezone.now() - timedelta(hours=5)
    features = feature_payload(
        earlier,
        lactate={
            "value": 2.0,
            "unit": "mmol/L",
            "observed_at": (earlier - timedelta(minutes=20)).isoformat(),
        },
        map={"value": 71.0, "unit": "mmHg", "observed_at": earlier.isoformat()},
    )
    prediction_create(model_version=version, patient=patient, risk=0.42, scored_at=earlier, features=features)
    context = browser.new_context(viewport={"width": 820, "height": 1180})
    page = context.new_page()
    try:
        log_in(page, live_server.url, "alice")
        assert page.evaluate("document.documentElement.scrollWidth") <= 820
        # Every column of the alert table fits: no sideways scrolling inside it either.
        assert page.evaluate("(t => t.scrollWidth <= t.clientWidth)(document.getElementById('alerts-table'))")
        page.screenshot(path=str(ARTIFACTS / "worklist_tablet.png"), full_page=True)
        page.goto(f"{live_server.url}/alerts/{ward['high'].alert.pk}/")
        page.wait_for_selector("#waterfall.js-plotly-plot .waterfalllayer .point", timeout=15_000)
        assert page.evaluate("document.documentElement.scrollWidth") <= 820
        assert page.locator(".history-table tbody tr").count() == 2
        lactate = page.locator(".feature-table tr", has_text="Lactate").locator(".trend")
        assert lactate.inner_text() == "↑ was 2 mmol/L"
        assert lactate.get_attribute("title").startswith("Up from 2 mmol/L (")
        mean_pressure = page.locator(".feature-table tr", has_text="Mean arterial pressure").locator(".trend")
        assert mean_pressure.inner_text() == "↓ was 71 mmHg"
        page.screenshot(path=str(ARTIFACTS / "alert_history_tablet.png"), full_page=True)
    finally:
        context.close()


def test_alert_is_operable_with_the_keyboard_alone(browser, live_server, ward):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        log_in(page, live_server.url, "alice")
        page.goto(f"{live_server.url}/alerts/{ward['medium'].alert.pk}/")
        page.wait_for_selector("#waterfall.js-plotly-plot .waterfalllayer .point", timeout=15_000)
        reached = []
        for _ in range(80):
            page.keyboard.press("Tab")
            info = page.evaluate(
                """() => { const el = document.activeElement; const s = getComputedStyle(el);
                  return {tag: el.tagName, name: el.name || '', href: el.getAttribute('href') || '',
                          id: el.id, text: (el.textContent || '').trim().slice(0, 40),
                          outline: s.outlineStyle}; }"""
            )
            reached.append(info)
            if info["tag"] == "INPUT" and info["name"] == "action":
                break
        # The model card link is on the way, and every stop shows a visible focus ring.
        assert any(r["href"] == "/models/icu-mortality-30d/versions/1/" for r in reached)
        assert all(r["outline"] != "none" for r in reached), [r for r in reached if r["outline"] == "none"]
        assert reached[-1]["name"] == "action"
        # The actions come before the what-if: no what-if field takes the focus on the way.
        assert page.locator("[id^=wi-]").count() > 0
        assert [r["id"] for r in reached if r["id"].startswith("wi-")] == []
        # Radios: space checks the first, arrows move along the group to "dismiss".
        page.keyboard.press("Space")
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        assert page.evaluate("document.querySelector('input[name=action]:checked').value") == "dismiss"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.name") == "reason"
        page.keyboard.press("ArrowDown")
        reason = page.evaluate("document.activeElement.value")
        assert reason in {"already_aware", "not_clinically_relevant", "data_error", "patient_comfort_care"}
        page.keyboard.press("Tab")
        page.keyboard.type("Typed with the keyboard.")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent.trim()") == "Record action"
        page.keyboard.press("Enter")
        page.wait_for_selector("#action-status:has-text('Recorded')")
        record = AlertAction.objects.get(alert=ward["medium"].alert)
        assert (record.action, record.reason, record.comment) == (
            "dismiss",
            reason,
            "Typed with the keyboard.",
        )
    finally:
        context.close()


def test_script_in_patient_name_or_comment_never_runs(browser, live_server, ward, settings, alice):
    settings.WORKLIST_POLL_SECONDS = 1
    version = ward["high"].model_version
    patient = patient_create(unit="MICU", display_name=XSS)
    evil = prediction_create(model_version=version, patient=patient, risk=0.88)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        log_in(page, live_server.url, "alice")
        assert XSS in page.locator("#alerts-body").inner_text()  # shown as text
        # Wait for a background refresh, which inserts the server's row html.
        first_poll = page.get_attribute("#worklist", "data-last-poll")
        Alert.objects.filter(pk=evil.alert.pk).update(state=Alert.State.ACKNOWLEDGED)
        page.wait_for_function(
            "() => document.querySelector('#alerts-body').textContent.indexOf('Acknowledged') !== -1"
            " && document.querySelector('#worklist').getAttribute('data-last-poll') !== "
            + json.dumps(first_poll),
            timeout=10_000,
        )
        assert page.evaluate("typeof window.__xss") == "undefined"
        assert page.locator("#alerts-body img").count() == 0

        page.goto(f"{live_server.url}/alerts/{evil.alert.pk}/")
        page.check("input[name=action][value=escalate]")
        page.select_option("select[name=reason]", "senior_review")
        page.fill("textarea[name=comment]", XSS)
        page.click("#action-form button[type=submit]")
        page.wait_for_selector("#action-status:has-text('Recorded')")
        assert XSS in page.locator("#action-list").inner_text()
        assert page.evaluate("typeof window.__xss") == "undefined"
        page.reload()
        assert XSS in page.locator("#action-list").inner_text()
        assert XSS in page.locator("h1").inner_text()
        page.wait_for_timeout(300)
        assert page.evaluate("typeof window.__xss") == "undefined"
        assert AlertAction.objects.get(alert=evil.alert).comment == XSS
        page.screenshot(path=str(ARTIFACTS / "xss_alert.png"), full_page=True)
    finally:
        context.close()
