"""Error pages a person sees are styled and say what to do next; the favicon is ours (no 404)."""

import pytest

from tests.fixtures.browser import ARTIFACTS, log_in

pytestmark = pytest.mark.django_db


def test_not_found_and_forbidden_pages_are_styled_and_helpful(alice_client):
    missing = alice_client.get("/no-such-page/")
    assert missing.status_code == 404
    html = missing.content.decode()
    assert "<h1>Nothing here</h1>" in html and "outside your units" in html
    assert 'href="/static/css/sightline.css"' in html and 'href="/"' in html

    forbidden = alice_client.get("/monitoring/")
    assert forbidden.status_code == 403
    assert "<h1>Not for your role</h1>" in forbidden.content.decode()


def test_server_error_page_needs_nothing_but_static_files(alice):
    from django.template.loader import render_to_string

    html = render_to_string("500.html")
    assert "<h1>Something went wrong</h1>" in html
    # Requests are not atomic (no ATOMIC_REQUESTS): the page promises nothing it cannot keep.
    assert "Nothing was changed" not in html
    assert "may have been saved" in html and "check before sending it again" in html


def test_the_favicon_is_served(alice_client):
    page = alice_client.get("/").content.decode()
    assert '<link rel="icon" type="image/svg+xml" href="/static/favicon.svg">' in page
    assert alice_client.get("/static/favicon.svg").status_code == 200


def test_django_admin_pages_link_the_favicon(charlie_client, client):
    """The admin's own pages carry the favicon link, so the browser never asks for /favicon.ico."""
    for reader, url in (
        (charlie_client, "/admin/"),
        (charlie_client, "/admin/models_registry/registeredmodel/upload/"),
        (client, "/admin/login/"),
    ):
        response = reader.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert '<link rel="icon" type="image/svg+xml" href="/static/favicon.svg">' in html, url
        assert 'id="site-name"' in html  # still Django's admin branding and navigation


@pytest.mark.parametrize("width, height", [(1280, 800), (820, 1180)])
def test_the_not_found_page_in_a_browser(browser, live_server, alice, transactional_db, width, height):
    """What a clinician who followed a stale link sees: the page's frame, a heading, a way back."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        log_in(page, live_server.url, "alice")
        response = page.goto(live_server.url + "/alerts/999999999/")
        assert response.status == 404
        assert page.locator("h1").inner_text() == "Nothing here"
        assert page.locator('main a[href="/"]').count() >= 1
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(ARTIFACTS / f"not_found_{width}.png"))
    finally:
        context.close()
