"""The dashboard opens on a window whose figures are computed: when scores of a new hour arrive, it
stays on the window the last refresh computed, and says which scores are not in it yet, until the
debounced refresh includes them."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache

from explanations.services import prediction_ingest_many
from monitoring.refresh import defaults_refresh
from monitoring.services import Comparison

pytestmark = pytest.mark.usefixtures("fresh_cache")

SCORED = datetime(2026, 3, 8, 9, 30, tzinfo=UTC)


def _ingest(prediction_payload, scored_at: datetime, ids: range) -> None:
    payloads = [
        prediction_payload(i, external_id=f"window-{i}", scored_at=scored_at.strftime("%Y-%m-%dT%H:%M:%SZ"))
        for i in ids
    ]
    assert all(hasattr(r, "prediction") for r in prediction_ingest_many(payloads=payloads, source="bulk"))


def _page(client) -> tuple[str, str]:
    response = client.get("/monitoring/")
    assert response.status_code == 200
    return response.context["default_to"], response.content.decode()


def _summary(client, version, end: datetime) -> dict:
    start = end - timedelta(days=7)
    query = {"version": version.pk, "from": f"{start:%Y-%m-%dT%H:%M}:00Z", "to": f"{end:%Y-%m-%dT%H:%M}:00Z"}
    response = client.get(
        "/monitoring/data/summary/", {**query, "reference": "reference", "slice": "overall"}
    )
    assert response.status_code == 200, response.content[:300]
    return response.json()


def test_new_hour_scores_keep_the_page_on_the_computed_window_and_say_so(
    charlie_client, model_version, prediction_payload
):
    _ingest(prediction_payload, SCORED, range(3))
    defaults_refresh(version_id=model_version.pk)
    first_end = datetime(2026, 3, 8, 10, tzinfo=UTC)
    default_to, html = _page(charlie_client)
    assert default_to == "2026-03-08T10:00" and 'id="monitoring-newer"' not in html

    _ingest(prediction_payload, SCORED + timedelta(hours=2), range(3, 4))  # a score of 11:30
    default_to, html = _page(charlie_client)
    assert default_to == "2026-03-08T10:00"  # not the new hour's window, whose figures are not computed
    assert "Scores from 2026-03-08 10:00 UTC on are not in these figures yet" in html
    summary = _summary(charlie_client, model_version, first_end)
    assert summary["status"] == "ready" and summary["n_current"] == 3
    assert (
        cache.get(
            f"{Comparison(model_version.pk, first_end - timedelta(days=7), first_end).cache_key}:queued"
        )
        is None
    )

    defaults_refresh(version_id=model_version.pk)  # the debounced refresh
    default_to, html = _page(charlie_client)
    assert default_to == "2026-03-08T12:00" and 'id="monitoring-newer"' not in html
    assert _summary(charlie_client, model_version, datetime(2026, 3, 8, 12, tzinfo=UTC))["n_current"] == 4


def test_without_a_refresh_yet_the_page_opens_on_the_newest_window(
    charlie_client, model_version, prediction_payload
):
    _ingest(prediction_payload, SCORED, range(2))
    default_to, html = _page(charlie_client)
    assert default_to == "2026-03-08T10:00" and 'id="monitoring-newer"' not in html
