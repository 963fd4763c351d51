"""Shared pytest fixtures. Each fixture module is owned by the part of the product it builds."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.registry",
    "tests.fixtures.people",
    "tests.fixtures.ingest",
    "tests.fixtures.worker",
    "tests.fixtures.browser",
    "tests.fixtures.records",
    "tests.fixtures.fake_ehr",
]
