"""A window without scores says in words what is missing and where the scores are."""

from datetime import UTC, datetime, timedelta

import pytest

from explanations.services import prediction_ingest_many

SCORED = datetime(2026, 3, 8, 9, 30, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("fresh_cache")


@pytest.fixture
def five_scores(model_version, prediction_payload):
    payloads = []
    for i in range(5):
        payload = prediction_payload(
            i, scored_at=(SCORED - timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        for entry in payload["features"].values():
            entry.pop("observed_at", None)
        payloads.append(payload)
    assert all(hasattr(r, "prediction") for r in prediction_ingest_many(payloads=payloads, source="bulk"))
    return payloads


def _summary(client, version, start: str, end: str, **extra) -> dict:
    response = client.get(
        "/monitoring/data/summary/", {"version": version.pk, "from": start, "to": end, **extra}
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_an_empty_window_names_the_newest_score(charlie_client, five_scores, model_version):
    summary = _summary(charlie_client, model_version, "2026-03-12T00:00:00Z", "2026-03-19T00:00:00Z")

    assert summary["n_current"] == 0
    assert summary["empty_note"] == (
        "No scores of icu-mortality-30d v1 for all units, all shifts between 2026-03-12 00:00 UTC and "
        "2026-03-19 00:00 UTC; its newest score there is from 2026-03-08 09:30 UTC, before this window."
    )
    assert {row["severity"] for row in summary["features"]} == {"insufficient"}


def test_a_unit_without_scores_and_a_window_with_them(charlie_client, five_scores, model_version):
    empty_unit = _summary(
        charlie_client, model_version, "2026-03-01T00:00:00Z", "2026-03-09T00:00:00Z", slice="unit:NOWHERE"
    )
    assert empty_unit["empty_note"].endswith(
        "for unit NOWHERE between 2026-03-01 00:00 UTC and 2026-03-09 00:00 UTC: "
        "this model version has no scores for unit NOWHERE at all yet."
    )
    with_scores = _summary(charlie_client, model_version, "2026-03-01T00:00:00Z", "2026-03-09T00:00:00Z")
    assert with_scores["n_current"] == 5 and with_scores["empty_note"] is None
