"""The subgroup sections of the model card and the Model Facts label in a real browser, at desktop
and tablet widths and as printed. Screenshots in tests/artifacts/ (model_card_subgroups_*.png,
model_facts_*.png)."""

import pytest

from tests.fixtures.browser import ARTIFACTS, log_in

pytestmark = pytest.mark.browser

CARD = "/models/icu-mortality-30d/versions/1/"
FACTS = CARD + "facts/"


@pytest.fixture
def computed(transactional_db, model_store, demo_bundle_dir, charlie, settings):
    from django.core.cache import cache

    from models_registry.services import model_register
    from models_registry.subgroups import version_subgroups_compute

    cache.clear()
    settings.SUBGROUP_BOOTSTRAP_RESAMPLES = 20
    version, _ = model_register(path=demo_bundle_dir, promote=True, user=charlie)
    assert version_subgroups_compute(version_id=version.pk) == "ready"
    version.refresh_from_db()
    return version


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (820, 1180)])
def test_clinician_reads_the_subgroups_and_prints_the_label(
    browser, live_server, computed, alice, width, height
):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        log_in(page, live_server.url, "alice")
        page.goto(live_server.url + CARD)
        protected = page.locator("#protected-characteristics").inner_text()
        assert "Race (race): not a model input" in protected
        assert page.locator("#subgroup-table-race tbody tr").count() == 4  # all patients + 3 groups
        first_flag = computed.checks["subgroup_disparity"]["flags"][0]["message"]
        assert page.get_by_text(first_flag).first.is_visible()
        page.locator("#subgroups").screenshot(path=str(ARTIFACTS / f"model_card_subgroups_{width}.png"))

        page.click("#model-facts-link")
        page.wait_for_url(live_server.url + FACTS)
        # unit 5 + shift 2 + sex 2 + age bands 4 + race 3 groups
        assert page.locator("#facts-subgroups tbody tr").count() == 16
        # The label fits the tablet's width: only its tables may scroll, never the page.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        page.screenshot(path=str(ARTIFACTS / f"model_facts_{width}.png"), full_page=True)
        page.emulate_media(media="print")
        assert not page.locator(".site-header").is_visible()
        assert not page.locator(".facts-actions").is_visible()
        page.screenshot(path=str(ARTIFACTS / f"model_facts_print_{width}.png"), full_page=True)
        assert errors == []
    finally:
        context.close()
