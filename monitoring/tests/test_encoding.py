"""Monitoring reads stored inputs by serving's rule (engine.encoding): the same posted values give
the same encoded rows, whichever way a scoring service spells a yes/no input."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from engine import drift
from explanations.services import prediction_ingest_many
from models_registry.serving import serving_model
from monitoring import selectors, windows
from monitoring.selectors import Slice
from patients.models import Prediction

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 8, 0, 0, tzinfo=UTC)
# JSON booleans, 0/1 and 0.0/1.0: serving takes each as yes or no.
YES_NO_SPELLINGS = [(True, False), (1, 0), (1.0, 0.0)]


@pytest.fixture
def mixed_spellings(model_version, prediction_payload):
    binary = [f.name for f in model_version.input_features() if f.kind == "binary"]
    assert binary, "the demo bundle has yes/no inputs"
    payloads = []
    for i in range(30):
        payload = prediction_payload(i, scored_at=(START + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        yes, no = YES_NO_SPELLINGS[i % len(YES_NO_SPELLINGS)]
        for name in binary:
            entry = payload["features"][name]
            if entry.get("value") is not None:
                entry["value"] = yes if entry["value"] in (True, 1, "true") else no
        payloads.append(payload)
    results = prediction_ingest_many(payloads=payloads, source="bulk", simulated=True)
    assert all(hasattr(r, "prediction") for r in results), results
    return binary


def _rows(matrix: np.ndarray) -> list[tuple]:
    """Rows as comparable tuples (NaN as None), in a fixed order."""
    return sorted(tuple(None if np.isnan(v) else round(float(v), 9) for v in row) for row in matrix)


def test_the_same_values_encode_the_same_in_serving_and_in_monitoring(mixed_spellings, model_version):
    serving = serving_model(model_version)
    stored = [p.features for p in Prediction.objects.filter(model_version=model_version)]
    by_serving = serving.encode_many(stored)
    specs = selectors.feature_specs(model_version)
    assert [s.name for s in specs] == serving.feature_names

    # Column by column, from the stored JSON values.
    by_monitoring = np.column_stack(
        [windows.encode_column([row[s.name] for row in stored], s) for s in specs]
    )
    assert _rows(by_monitoring) == _rows(by_serving)

    # And through both database read paths the dashboard uses (whole window, no sampling).
    end = START + timedelta(days=3)
    for collect in (windows.window_collect_sql, windows.window_collect_streamed):
        window = collect(model_version, START, end, Slice("overall"), risk_edges=np.array([0.5]))
        assert window.n == len(stored) and not window.sampled
        assert _rows(window.sample[serving.feature_names].to_numpy(dtype=float)) == _rows(by_serving)


def test_yes_no_inputs_spelled_differently_show_no_drift(mixed_spellings, model_version):
    """The false "major" drift on yes/no features: each spelling is the same input to the model."""
    specs = {s.name: s for s in selectors.feature_specs(model_version)}
    stored = [p.features for p in Prediction.objects.filter(model_version=model_version)]
    for name in mixed_spellings:
        spec = specs[name]
        encoded = windows.encode_column([row[name] for row in stored], spec)
        as_posted = [row[name]["value"] for row in stored]
        expected = [np.nan if v is None else float(bool(v)) for v in as_posted]
        assert np.array_equal(encoded, np.array(expected), equal_nan=True), name
        # The same values spelled as JSON booleans throughout: no drift at all.
        canonical = windows.encode_column(
            [{"value": None if v is None else bool(v)} for v in as_posted], spec
        )
        row = drift.feature_drift(pd.Series(canonical), pd.Series(encoded), spec)
        assert row["psi"] == pytest.approx(0.0, abs=1e-9) and row["severity_level"] == 0, row
