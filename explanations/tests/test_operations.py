"""create_service_token, and the API's answer when the database is down."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError

from accounts.auth import hash_key
from accounts.models import ServiceToken

pytestmark = pytest.mark.django_db


def test_create_service_token_prints_a_key_that_authenticates_and_stores_only_its_hash(client):
    out, err = StringIO(), StringIO()

    call_command("create_service_token", "epic-scoring", stdout=out, stderr=err)

    key = out.getvalue().strip()
    token = ServiceToken.objects.get(name="epic-scoring")
    assert token.key_hash == hash_key(key)
    assert key not in {token.key_hash, token.prefix, token.name}
    assert "not shown again" in err.getvalue()
    response = client.post(
        "/api/v1/outcomes/",
        {"encounter_id": "E-x", "outcome": True},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {key}",
    )
    assert response.status_code == 404  # authenticated: the encounter is what is missing


def test_create_service_token_refuses_a_taken_name():
    call_command("create_service_token", "epic-scoring", stdout=StringIO(), stderr=StringIO())

    with pytest.raises(CommandError, match="already exists"):
        call_command("create_service_token", "epic-scoring", stdout=StringIO(), stderr=StringIO())
    assert ServiceToken.objects.count() == 1


def test_database_outage_is_503_json(service_client, prediction_payload, monkeypatch):
    from explanations import services

    def outage(**kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(services, "prediction_ingest", outage)

    response = service_client.post("/api/v1/predictions/", prediction_payload(0), format="json")

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "service_unavailable"
