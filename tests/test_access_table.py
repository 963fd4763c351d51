"""The access table covers the URLconf exactly: every URL pattern has an expectation, and the table
names no URL that is gone (the table is tests/access_table.py; the walk, tests/test_access_walk.py)."""

from __future__ import annotations

from tests.access_table import EXPECTATIONS, expectation_for, url_routes


def test_every_url_has_an_expectation():
    missing = [r.route for r in url_routes() if expectation_for(r) is None]
    assert not missing, f"URL patterns with no access expectation in tests/access_table.py: {missing}"
    # And the table names no URL that is gone.
    names = {r.name for r in url_routes()}
    assert set(EXPECTATIONS) <= names, set(EXPECTATIONS) - names
