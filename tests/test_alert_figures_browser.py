"""Issue 19 on the alert page and the worklist in a real browser: the waterfall reads in percentage
points until the clinician asks for log-odds, and its labels never overlap on a tablet; the what-if
change is the difference of the risks as shown; every control is a 44 x 44 px touch target.

Debian's Chromium driven by Playwright against pytest-django's live_server. Screenshots go to
tests/artifacts/ (git-ignored) for a person to look at.
"""

import json

import pytest

from engine.headline import shown_percent
from patients.models import Prediction
from tests.fixtures.browser import ARTIFACTS, log_in
from tests.fixtures.factories import model_version_create, prediction_create

pytestmark = pytest.mark.browser

TABLET = {"width": 820, "height": 1180}
CHART = "#waterfall.js-plotly-plot .waterfalllayer .point"

# Every SVG text Plotly drew in the chart, with its box: labels, values, ticks, axis title.
_TEXT_BOXES = """() => [...document.querySelectorAll('#waterfall svg text')]
  .filter(t => t.textContent.trim() && getComputedStyle(t).display !== 'none')
  .map(t => { const r = t.getBoundingClientRect();
              return {text: t.textContent, x: r.x, y: r.y, w: r.width, h: r.height}; })
  .filter(b => b.w > 0 && b.h > 0)"""


@pytest.fixture
def ward(transactional_db, alice):
    """Alice's MICU: a high alert (0.78) and a medium one, their explanations ready."""
    version = model_version_create()
    high = prediction_create(model_version=version, unit="MICU", risk=0.78)
    medium = prediction_create(model_version=version, unit="MICU", risk=0.34)
    return {"high": high, "medium": medium}


def _intersect(a: dict, b: dict) -> bool:
    across = a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
    return across and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def _overlapping(boxes: list[dict]) -> list[tuple[str, str]]:
    """Pairs of text labels whose boxes intersect."""
    return [(a["text"], b["text"]) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if _intersect(a, b)]


def test_waterfall_reads_in_points_until_asked_and_its_labels_never_overlap(browser, live_server, ward):
    context = browser.new_context(viewport=TABLET)
    page = context.new_page()
    try:
        log_in(page, live_server.url, "alice")
        page.goto(f"{live_server.url}/alerts/{ward['high'].alert.pk}/")
        page.wait_for_selector(CHART, timeout=15_000)
        chart = page.locator("#waterfall")
        # By default: percentage points, on the axis and in the labels; no log-odds column shown.
        assert chart.get_attribute("data-units") == "points"
        assert page.locator("#waterfall .g-xtitle").text_content().startswith("risk (%)")
        assert "pts" in page.locator("#waterfall .waterfalllayer").text_content()
        assert page.locator(".feature-table th.log-odds").is_hidden()
        visible = page.evaluate("document.querySelector('main').innerText")
        about = page.locator("#about-explanation").inner_text()
        outside = visible.replace(about, "").replace(page.locator("#waterfall-units").inner_text(), "")
        for term in ("log-odds", "SHAP", "Venn-Abers", "background", "onformal"):
            assert term not in outside, term
        boxes = page.evaluate(_TEXT_BOXES)
        assert len(boxes) >= 8, boxes
        assert _overlapping(boxes) == []
        page.screenshot(path=str(ARTIFACTS / "alert_waterfall_points_tablet.png"), full_page=True)

        # On request: the exact log-odds, in the chart and in the inputs table.
        page.click("#waterfall-units")
        page.wait_for_function("document.querySelector('#waterfall').dataset.units === 'log-odds'")
        assert page.get_attribute("#waterfall-units", "aria-pressed") == "true"
        assert page.locator("#waterfall .g-xtitle").text_content().startswith("log-odds")
        assert "pts" not in page.locator("#waterfall .waterfalllayer").text_content()
        assert page.locator(".feature-table th.log-odds").is_visible()
        assert _overlapping(page.evaluate(_TEXT_BOXES)) == []
        page.screenshot(path=str(ARTIFACTS / "alert_waterfall_logodds_tablet.png"), full_page=True)

        # And back.
        page.click("#waterfall-units")
        page.wait_for_function("document.querySelector('#waterfall').dataset.units === 'points'")
        assert page.locator(".feature-table th.log-odds").is_hidden()
    finally:
        context.close()


def _what_if_answer(*, original: float, risk: float) -> dict:
    """The what-if API's answer in its documented shape (explanations.services.prediction_what_if)."""
    return {
        "prediction_id": 0,
        "hypothetical": True,
        "risk": risk,
        "tier": "high" if risk >= 0.5 else "low",
        "original": {"risk": original, "tier": "high" if original >= 0.5 else "low"},
        "delta": {"risk": risk - original, "margin": 0.0},
        "features": [
            {
                "name": "lactate",
                "label": "Lactate",
                "value": 2.0,
                "original_value": 4.2,
                "changed": True,
                "shap": -0.31,
                "points": -0.046,
                "shap_delta": -0.82,
            }
        ],
    }


@pytest.mark.parametrize(
    ("original", "risk"),
    [(0.904, 0.646), (0.125, 0.345), (0.785, 0.235)],
    ids=["90-to-65", "halves", "halves-down"],
)
def test_what_if_change_is_the_difference_of_the_risks_as_shown(browser, live_server, ward, original, risk):
    """90% -> 65% reads -25 (not the -26 of 0.904 -> 0.646); each risk rounds as the headline does."""
    context = browser.new_context(viewport=TABLET)
    page = context.new_page()
    answer = _what_if_answer(original=original, risk=risk)
    try:
        log_in(page, live_server.url, "alice")
        page.route(
            "**/what-if/",
            lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(answer)),
        )
        page.goto(f"{live_server.url}/alerts/{ward['high'].alert.pk}/")
        page.fill("#wi-lactate", "2")
        page.click("#whatif-form button[type=submit]")
        page.wait_for_selector("#whatif-result:not([hidden])")
        line = page.locator("#whatif-risk").inner_text()
        shown_before, shown_after = shown_percent(original), shown_percent(risk)
        change = shown_after - shown_before
        assert line.startswith(f"Hypothetical risk {shown_after}%, ")
        assert f"(this score: {shown_before}%, " in line
        sign = "+" if change > 0 else "\u2212"
        assert f"; {sign}{abs(change)} percentage points)." in line
        if original == 0.904:
            assert change == -25 and round(100 * (risk - original)) == -26
        # The result's contributions read in points; the log-odds columns wait for the toggle.
        row = page.locator("#whatif-rows tr").first
        assert row.locator("td").nth(1).inner_text() == "\u22124.6"
        assert row.locator("td.log-odds").first.is_hidden()
        page.click("#waterfall-units")
        assert row.locator("td.log-odds").first.inner_text() == "\u22120.31"
    finally:
        context.close()


# The controls a clinician touches on each page, each at least 44 x 44 px on a tablet.
WORKLIST_CONTROLS = (
    ".nav a",
    ".nav-logout button",
    ".filters select",
    ".filters button",
    ".filters a",
    ".worklist-pages a",
    "#alerts-body a",
    ".low-list a",
)
ALERT_CONTROLS = (
    ".nav a",
    ".nav-logout button",
    ".breadcrumb a",
    "#waterfall-units",
    "#action-form label.radio",
    "#action-form select",
    "#action-form button[type=submit]",
    "#whatif-form input",
    "#whatif-form select",
    "#whatif-form button",
    "#about-explanation summary",
    ".feature-table td a",
)


def _small_targets(page, selectors: tuple[str, ...]) -> list:
    small, seen = [], set()
    for selector in selectors:
        controls = page.locator(selector)
        for i in range(controls.count()):
            box = controls.nth(i).bounding_box()
            if box is None:
                continue  # not rendered (e.g. hidden)
            seen.add(selector)
            if box["width"] < 44 or box["height"] < 44:
                small.append((selector, i, round(box["width"]), round(box["height"])))
    missing = [s for s in selectors if s not in seen]
    return small + [("not found", s) for s in missing]


def test_every_control_is_a_44px_touch_target_on_a_tablet(browser, live_server, ward, monkeypatch):
    monkeypatch.setattr("clinician_ui.selectors.worklist.WORKLIST_PAGE_SIZE", 1)
    version = ward["high"].model_version
    for risk in (0.05, 0.07):
        prediction_create(model_version=version, unit="MICU", risk=risk)
    context = browser.new_context(viewport=TABLET)
    page = context.new_page()
    try:
        log_in(page, live_server.url, "alice")
        page.goto(f"{live_server.url}/?unit=MICU")
        assert _small_targets(page, WORKLIST_CONTROLS) == []
        page.screenshot(path=str(ARTIFACTS / "worklist_targets_tablet.png"), full_page=True)

        page.goto(f"{live_server.url}/alerts/{ward['high'].alert.pk}/")
        page.wait_for_selector(CHART, timeout=15_000)
        assert _small_targets(page, ALERT_CONTROLS) == []

        low = Prediction.objects.get(model_version=version, risk=0.05)
        page.goto(f"{live_server.url}/predictions/{low.pk}/")
        assert _small_targets(page, (".cue button",)) == []
    finally:
        context.close()
