import pytest

from tests.fixtures.factories import model_version_create


@pytest.fixture
def ui_model_version(db):
    """A model version with the factories' feature schema (tiers: high >= 0.5, medium >= 0.25)."""
    return model_version_create()
