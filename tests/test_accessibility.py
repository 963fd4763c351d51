"""axe-core (through axe-playwright-python) on the pages clinicians and admins use: the worklist, an
alert page, the model card and the monitoring dashboard, at desktop and tablet widths. No serious
or critical violation is allowed."""

import pytest

from tests.fixtures.browser import log_in

pytestmark = pytest.mark.browser

BLOCKING = ("serious", "critical")


@pytest.fixture
def scored(transactional_db, model_version, prediction_payload, alice, charlie):
    """A few demo patients of MICU ingested and explained in-process (one of them a high alert)."""
    from django.core.cache import cache

    from explanations.services import prediction_ingest
    from patients.models import Alert

    cache.clear()
    for index in (9, 19, 3, 4):
        payload = prediction_payload(index)
        payload["patient"]["unit"] = "MICU"
        prediction_ingest(payload=payload, source="rest")
    return Alert.objects.order_by("-risk").first()


def _blocking_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in BLOCKING
    ]


@pytest.mark.parametrize("viewport", [(1280, 800), (820, 1180)], ids=["desktop", "tablet"])
def test_no_serious_accessibility_violations(browser, live_server, scored, model_version, viewport):
    width, height = viewport
    found = {}
    for user, paths in (
        ("alice", ["/", f"/alerts/{scored.pk}/"]),
        (
            "charlie",
            [
                f"/models/{model_version.registered_model.name}/versions/{model_version.version}/",
                "/monitoring/",
            ],
        ),
    ):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        try:
            log_in(page, live_server.url, user)
            for path in paths:
                page.goto(live_server.url + path)
                page.wait_for_load_state("networkidle")
                violations = _blocking_violations(page)
                if violations:
                    found[path] = violations
        finally:
            context.close()
    assert found == {}, found
