"""The monitoring dashboard in a real browser: an admin compares a past window (the reference) with
the next day, on the one unit where one feature was shifted. The summary arrives (after polling if
it answers 202), the input-drift table is sorted by severity with the shifted feature first, its
distribution overlay renders in Plotly, and the alert-burden table and figures are on the page.
Screenshot in tests/artifacts/monitoring.png.
"""

from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.browser import ARTIFACTS, log_in

pytestmark = pytest.mark.browser

SHIFTED_UNIT = "MICU"
SHIFTED_FEATURE = "sodium"
SHIFT = 12  # mmol/L: e.g. a recalibrated analyser on one unit


@pytest.fixture
def two_days(transactional_db, model_version, prediction_payload, charlie):
    """The 60 demo patients scored on 2026-03-08 and again on 2026-03-09; on the second day the
    MICU patients' sodium reads SHIFT mmol/L higher. Two alerts get an override, one is accepted."""
    from django.core.cache import cache

    from explanations.services import prediction_ingest_many
    from patients.models import Alert, AlertAction

    cache.clear()
    payloads = []
    for day in (0, 1):
        start = datetime(2026, 3, 8, tzinfo=UTC) + timedelta(days=day)
        for i in range(prediction_payload.count):
            payload = prediction_payload(i)
            payload["external_id"] = f"{payload['external_id']}/day{day}"
            payload["scored_at"] = (start + timedelta(minutes=20 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            for entry in payload["features"].values():
                entry.pop("observed_at", None)
            sodium = payload["features"][SHIFTED_FEATURE]
            if day == 1 and payload["patient"]["unit"] == SHIFTED_UNIT and sodium["value"] is not None:
                sodium["value"] += SHIFT
            payloads.append(payload)
    results = prediction_ingest_many(payloads=payloads, source="bulk", simulated=True)
    assert all(hasattr(r, "prediction") for r in results)
    alerts = list(
        Alert.objects.filter(
            prediction__scored_at__gte=datetime(2026, 3, 9, tzinfo=UTC), prediction__unit=SHIFTED_UNIT
        ).order_by("pk")
    )
    assert len(alerts) >= 3
    for alert, (action, reason) in zip(
        alerts[:3],
        [("dismiss", "already_aware"), ("dismiss", "data_error"), ("accept", "treatment_changed")],
        strict=True,
    ):
        AlertAction.objects.create(
            alert=alert, user=charlie, role="admin", action=action, reason=reason,
            shown_at=alert.prediction.scored_at, seconds_to_decision=90.0, idempotency_key=f"k-{alert.pk}",
        )  # fmt: skip
    yield payloads
    cache.clear()


def test_admin_finds_the_shifted_feature_first_and_its_overlay(browser, live_server, two_days, model_version):
    micu = sum(p["patient"]["unit"] == SHIFTED_UNIT for p in two_days) // 2
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        log_in(page, live_server.url, "charlie")

        page.goto(live_server.url + "/monitoring/")
        # The default view (the last 7 days, nothing scored) settles before we ask for ours.
        page.wait_for_function(
            "() => !document.getElementById('monitoring-results').hidden"
            " || document.getElementById('monitoring-status').textContent !== 'Loading…'",
            timeout=20_000,
        )
        page.select_option("select[name=reference]", "window")
        page.fill("input[name=ref_from]", "2026-03-08T00:00")
        page.fill("input[name=ref_to]", "2026-03-09T00:00")
        page.fill("input[name=from]", "2026-03-09T00:00")
        page.fill("input[name=to]", "2026-03-10T00:00")
        page.select_option("select[name=slice]", f"unit:{SHIFTED_UNIT}")
        page.click("#monitoring-form button[type=submit]")

        meta = page.locator("#monitoring-meta")
        page.wait_for_function(
            "() => document.getElementById('monitoring-meta').textContent.includes('unit:"
            + SHIFTED_UNIT
            + "')",
            timeout=30_000,
        )
        assert f"{micu} current scores against {micu}" in meta.inner_text()
        assert page.locator("#monitoring-simulated").is_visible()

        rows = page.locator("#feature-table tbody tr")
        assert rows.count() == len(model_version.input_features())
        first = rows.first
        assert first.locator("th").inner_text().startswith("Sodium")
        assert "major" in first.locator(".severity").inner_text()
        # The same patients on the same unit: every other feature is unchanged, hence stable.
        severities = [rows.nth(i).locator(".severity").inner_text() for i in range(1, rows.count())]
        assert all(s.startswith("stable") for s in severities), severities
        assert first.get_attribute("aria-selected") == "true"

        # The first feature's overlay opens by itself; opening another one and back redraws it.
        page.wait_for_selector("#feature-figure.js-plotly-plot .barlayer .trace", timeout=20_000)
        rows.nth(1).click()
        page.wait_for_function(
            "() => document.querySelector('#feature-figure .gtitle')"
            " && !document.querySelector('#feature-figure .gtitle').textContent.startsWith('Sodium')",
            timeout=20_000,
        )
        first.click()
        page.wait_for_function(
            "() => document.querySelector('#feature-figure .gtitle')"
            " && document.querySelector('#feature-figure .gtitle').textContent.startsWith('Sodium')",
            timeout=20_000,
        )
        assert page.locator("#feature-figure .barlayer .trace").count() == 2  # reference and current
        legend = page.locator("#feature-figure .legend").text_content()
        assert "Reference" in legend and "Current" in legend

        # Alert burden: the unit's row and the whole slice, overrides by reason, time to decision.
        page.wait_for_selector("#overrides-figure.js-plotly-plot .barlayer .trace", timeout=20_000)
        page.wait_for_selector("#decision-figure.js-plotly-plot .barlayer .trace", timeout=20_000)
        burden = page.locator("#burden-table tbody tr")
        units = burden.locator("th").all_inner_texts()
        assert units[-1] == "All" and SHIFTED_UNIT in units
        overrides = page.locator("#overrides-figure").inner_text()
        assert "Overrides (dismissals) by reason" in overrides
        assert "n = " in page.locator("#decision-figure").inner_text()

        page.locator("#h-features").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "monitoring.png"))
        page.screenshot(path=str(ARTIFACTS / "monitoring_full.png"), full_page=True)
        # On a tablet the page never scrolls sideways: wide tables and charts scroll inside their box.
        page.set_viewport_size({"width": 820, "height": 1180})
        page.wait_for_timeout(300)  # Plotly's responsive charts redraw on resize
        assert page.evaluate("document.documentElement.scrollWidth") <= 820
        page.screenshot(path=str(ARTIFACTS / "monitoring_tablet.png"))
        assert errors == []
    finally:
        context.close()
