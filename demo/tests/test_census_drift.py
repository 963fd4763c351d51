"""The demo census against its model's reference set: no "major" drift on a feature whose values did
not shift (labs are the real day-1 values of the reference's population; bedside values within 10%
of them), in the monitoring summary an admin opens."""

from datetime import UTC, datetime, timedelta

import pytest

from demo import rhc
from demo.census import census_payloads
from explanations.services import prediction_ingest_many

CLOCK = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("fresh_cache")


@pytest.fixture
def census(model_version):
    """The demo census's last two days of scores (every bed, a score every 6 hours), ingested."""
    payloads = [
        p
        for p in census_payloads(model_name=model_version.registered_model.name, clock=CLOCK)
        if p["scored_at"] >= (CLOCK - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ]
    results = prediction_ingest_many(payloads=payloads, source="bulk", simulated=True)
    assert all(hasattr(r, "prediction") for r in results)
    return payloads


@pytest.mark.parametrize("hours", [24, 48])
def test_the_demo_census_shows_no_major_drift_on_values_that_did_not_shift(
    charlie_client, census, model_version, hours
):
    window = {
        "from": (CLOCK - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "to": CLOCK.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    summary = charlie_client.get("/monitoring/data/summary/", {"version": model_version.pk, **window}).json()

    in_window = [p for p in census if window["from"] <= p["scored_at"] < window["to"]]
    patients = {p["encounter_id"] for p in in_window}
    assert summary["n_current"] == len(in_window) > len(patients)  # patients are scored every 6 hours
    bedside = {f.name for f in rhc.INPUT_FEATURES if f.source == "monitor"}
    for row in summary["features"]:
        # One row per patient (the latest score), as the reference set holds one row per patient.
        assert row["n_current"] == len(patients), row["feature"]
        assert row["severity"] != "major", row
        if row["feature"] not in bedside:
            assert row["severity"] == "stable", row  # the very values of the reference's population
