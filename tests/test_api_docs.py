"""The browsable API documentation: Swagger UI served from our own static files, for people signed in."""

import re

import pytest

from tests.fixtures.browser import ARTIFACTS, log_in

pytestmark = pytest.mark.django_db


def test_api_docs_need_a_login_and_load_only_local_assets(client, charlie_client):
    anonymous = client.get("/api/docs/")
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]

    page = charlie_client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<script>" not in html  # the page's own script is a separate file (strict CSP)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served by Sightline"
        assert charlie_client.get(asset).status_code == 200, asset
    assert "/api/schema/" in charlie_client.get("/api/docs/?script=").content.decode()


def test_the_admin_nav_links_the_api_docs(charlie_client, alice_client):
    assert 'href="/api/docs/"' in charlie_client.get("/").content.decode()
    assert 'href="/api/docs/"' not in alice_client.get("/").content.decode()


@pytest.mark.browser
def test_swagger_ui_renders_the_api_in_a_browser(browser, live_server, charlie, transactional_db):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        log_in(page, live_server.url, "charlie")
        page.goto(live_server.url + "/api/docs/")
        page.wait_for_selector(".opblock-summary-path", timeout=20_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/api/v1/predictions/" in paths
        page.screenshot(path=str(ARTIFACTS / "api_docs.png"))
        page.set_viewport_size({"width": 820, "height": 1180})
        page.screenshot(path=str(ARTIFACTS / "api_docs_tablet.png"))
        assert errors == []
    finally:
        context.close()
