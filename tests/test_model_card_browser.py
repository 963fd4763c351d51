"""The model card in a real browser: an admin opens the registry, then a version's card; the Plotly
charts (reliability, metrics, ROC, precision-recall) render from charts.json, the promotion gate's
figures and the registration checks are on the page. Screenshot in tests/artifacts/model_card.png.
"""

import pytest

from tests.fixtures.browser import ARTIFACTS, log_in

pytestmark = pytest.mark.browser


@pytest.fixture
def registered(transactional_db, model_store, demo_bundle_dir, charlie):
    from django.core.cache import cache

    from models_registry.services import model_register

    cache.clear()
    version, _ = model_register(path=demo_bundle_dir, promote=True, user=charlie)
    return version


def test_admin_opens_the_model_card_and_its_charts_render(browser, live_server, registered):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        log_in(page, live_server.url, "charlie")

        page.goto(live_server.url + "/models/")
        assert "icu-mortality-30d" in page.content()
        page.click('a[href="/models/icu-mortality-30d/versions/1/"]')
        page.wait_for_url(live_server.url + "/models/icu-mortality-30d/versions/1/")

        for chart in ("reliability-chart", "metrics-chart", "roc-chart", "pr-chart"):
            page.wait_for_selector(f"#{chart}.js-plotly-plot .scatterlayer .trace", timeout=20_000)
        # ROC: model, challenger and the chance diagonal; PR: model and challenger.
        assert page.locator("#roc-chart .scatterlayer .trace").count() == 3
        assert page.locator("#pr-chart .scatterlayer .trace").count() == 2
        assert "ROC curve (reference set)" in page.locator("#roc-chart").inner_text()

        assert page.locator("#card-status").inner_text() == "production"
        gate = page.locator("#gate-result").inner_text()
        assert gate.startswith("Passed.")
        gate_rows = page.locator("#gate-table tbody tr")
        assert gate_rows.count() == len(registered.gate["criteria"])
        auroc_row = gate_rows.filter(has_text="AUROC")
        # The gate table reads to three decimals (the card's rounding), never the JSON's raw float.
        assert f"{registered.gate['criteria'][0]['model']:.3f}" in auroc_row.inner_text()

        checks = page.locator("#checks-list > li")
        assert checks.count() == 8  # the six checks, the SHAP engine proof and the subgroup figures
        texts = checks.all_inner_texts()
        subgroup = [t for t in texts if "Subgroup disparity" in t]
        assert all(text.startswith("pass") for text in texts if text not in subgroup)
        # The subgroup figures are a worker's job (not queued in tests): the card says so.
        assert len(subgroup) == 1 and subgroup[0].startswith("pending — Subgroup disparity")
        assert "Spearman" in page.locator("#checks-list").inner_text()
        page.screenshot(path=str(ARTIFACTS / "model_card.png"), full_page=True)
        # On a tablet the page never scrolls sideways: wide tables and charts scroll inside their box.
        page.set_viewport_size({"width": 820, "height": 1180})
        page.wait_for_timeout(300)  # Plotly's responsive charts redraw on resize
        assert page.evaluate("document.documentElement.scrollWidth") <= 820
        page.screenshot(path=str(ARTIFACTS / "model_card_tablet.png"))
        assert errors == []
    finally:
        context.close()
