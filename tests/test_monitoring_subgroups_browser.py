"""The monitoring page's subgroup view in a real browser: the flag of a miscalibrated subgroup, the
disparity table and the calibration-per-subgroup chart. Screenshots in tests/artifacts/."""

import re

import pytest

from tests.fixtures.browser import ARTIFACTS, log_in
from tests.fixtures.subgroup_ward import END, START, ward_create

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (820, 1180)])
def test_admin_sees_the_flagged_subgroup_and_its_calibration(
    browser, live_server, transactional_db, charlie, settings, width, height
):
    from django.core.cache import cache

    cache.clear()
    settings.SUBGROUP_MONITORING_RESAMPLES = 10
    version = ward_create()
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        log_in(page, live_server.url, "charlie")
        page.goto(live_server.url + "/monitoring/")
        page.select_option("select[name=version]", str(version.pk))
        page.fill("input[name=from]", START.strftime("%Y-%m-%dT%H:%M"))
        page.fill("input[name=to]", END.strftime("%Y-%m-%dT%H:%M"))
        page.select_option("select[name=slice]", "unit:MICU")
        page.click("#monitoring-form button[type=submit]")
        page.wait_for_selector("#subgroup-calibration-figure .scatterlayer .trace", timeout=120_000)
        page.wait_for_function(
            "() => document.querySelector('#subgroup-flags').innerText"
            ".includes('In 80+ the model under-predicts')",
            timeout=120_000,
        )
        assert page.locator("#subgroup-table tbody tr").count() > 0
        first = page.locator("#subgroup-table tbody tr").first.inner_text()
        assert first.startswith("Age\t80+")
        assert re.search(r"\d \(\d[.\d]*–\d[.\d]*\)", page.locator("#subgroup-table tbody").inner_text())
        old = page.locator("#subgroup-burden-table tbody tr", has_text="80+").first.inner_text()
        assert old.startswith("Age\t80+\t96\t")  # every 80+ encounter of MICU, with its alerts and actions
        assert "0%" in old
        page.locator("#subgroups-section").screenshot(
            path=str(ARTIFACTS / f"monitoring_subgroups_{width}.png")
        )
        page.screenshot(path=str(ARTIFACTS / f"monitoring_subgroups_page_{width}.png"), full_page=False)
        assert errors == []
    finally:
        context.close()
