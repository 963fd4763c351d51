"""Drift that says only what the data say: no drift of the reference set against itself. (The demo
census against the reference: demo/tests/test_census_drift.py.)"""

import pytest

from engine import drift
from models_registry.serving import serving_model
from monitoring import selectors

pytestmark = pytest.mark.usefixtures("fresh_cache")


def test_the_reference_set_against_itself_shows_no_drift_on_any_feature(model_version):
    specs = selectors.feature_specs(model_version)
    reference = serving_model(model_version).reference[[s.name for s in specs]]

    table = drift.drift_table(reference, reference, specs)

    assert len(table) == len(specs) == len(model_version.input_features())
    for row in table:
        assert row["severity_level"] == 0 and row["reasons"] == [], row
        assert row["psi"] == pytest.approx(0.0, abs=1e-12) and row["psi_judged"]
        assert row["missing_change"] == 0.0
