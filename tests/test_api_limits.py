"""Request size limits (413) and rate limits per token (429), both as contract JSON errors."""

import json

import pytest
from django.core.cache import cache
from rest_framework.throttling import SimpleRateThrottle

from patients.models import Prediction


@pytest.mark.django_db
def test_a_body_over_the_limit_is_refused_unread_with_413(service_client, settings):
    settings.API_BODY_LIMIT_DEFAULT = 10_000
    body = json.dumps({"external_id": "x", "padding": "a" * 20_000})
    response = service_client.post("/api/v1/predictions/", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert "10,000 bytes" in response.json()["detail"]
    assert Prediction.objects.count() == 0


@pytest.mark.django_db
def test_bulk_has_its_own_larger_limit(service_client, settings):
    settings.API_BODY_LIMIT_DEFAULT = 1_000
    body = json.dumps([{"external_id": f"x{i}", "pad": "a" * 100} for i in range(20)])
    response = service_client.post("/api/v1/predictions/bulk/", data=body, content_type="application/json")
    # Not refused for size: answered item by item (every item here is invalid).
    assert response.status_code == 200
    assert all(item["status"] == 400 for item in response.json()["results"])


@pytest.mark.django_db
def test_a_token_over_its_rate_gets_429_json_with_retry_after(service_client, monkeypatch):
    cache.clear()
    monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, "service", "3/min")
    statuses = [
        service_client.post("/api/v1/predictions/", data={}, format="json").status_code for _ in range(4)
    ]
    assert statuses[:3] == [400, 400, 400]
    assert statuses[3] == 429
    response = service_client.post("/api/v1/predictions/", data={}, format="json")
    assert response.json()["error"] == "throttled"
    assert int(response["Retry-After"]) > 0
    cache.clear()


@pytest.mark.django_db
def test_session_only_endpoints_answer_an_anonymous_caller_401_not_403(client):
    """Pen test finding 16: DRF answered 403 "Authentication credentials were not provided." where
    the contract says 401."""
    response = client.get("/api/v1/exports/overrides/?from=2026-01-01&to=2026-02-01")
    assert (response.status_code, response.json()["error"]) == (401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Session ")
    # The model card also takes an admin's API token (registry scope): its challenge names the token.
    card = client.get("/api/v1/models/x/versions/1/card/")
    assert (card.status_code, card.json()["error"]) == (401, "not_authenticated")
    assert card["WWW-Authenticate"] == "Token"
    posted = client.post("/api/v1/alerts/1/actions/", {}, content_type="application/json")
    assert posted.status_code == 401
