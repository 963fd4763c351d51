"""The idle warning in a real browser (issue 15, finding 6): before the idle limit the page warns
and offers to stay signed in; staying keeps the session; left alone, the page goes to the login
page saying why. The worklist's background refresh never keeps the session alive. No CSP violation."""

import pytest

from tests.fixtures.browser import csp_violations, log_in

pytestmark = pytest.mark.browser


def test_the_page_warns_then_signs_out_an_idle_session(
    browser, live_server, alice, settings, transactional_db
):
    settings.SESSION_IDLE_TIMEOUT_SECONDS = 8
    settings.SESSION_IDLE_WARNING_SECONDS = 5
    settings.WORKLIST_POLL_SECONDS = 1
    context = browser.new_context()
    page = context.new_page()
    violations = csp_violations(page)
    try:
        log_in(page, live_server.url, "alice")
        warning = page.locator("#session-warning")
        warning.wait_for(state="visible", timeout=10_000)
        assert "you will be signed out in 0:0" in page.locator("#session-warning-text").inner_text()

        page.click("#session-stay")
        warning.wait_for(state="hidden", timeout=5_000)
        page.wait_for_timeout(1_500)
        assert page.url == live_server.url + "/"  # stayed signed in past the first deadline's warning

        # Left alone (the worklist keeps polling every second): warned again, then signed out.
        warning.wait_for(state="visible", timeout=10_000)
        page.wait_for_url(lambda url: "/login/" in url, timeout=15_000)
        assert "signed out after a period without activity" in page.locator("#session-ended").inner_text()
        assert violations == []
    finally:
        context.close()
