"""Admin API tokens: `manage.py create_api_token`, and `Authorization: Token <key>` on the upload."""

import hashlib
import io

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import ApiToken
from models_registry.models import ModelVersion, RegisteredModel
from models_registry.tests.test_upload import URL, _zip


def _create_token(username: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", username, "--name", "nightly-training", stdout=out, stderr=err)
    assert "not shown again" in err.getvalue()
    return out.getvalue().strip()


def _token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_command_prints_the_key_once_and_stores_only_its_hash(charlie):
    key = _create_token("charlie")

    token = ApiToken.objects.get()
    assert len(key) >= 40
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert (token.user, token.name, token.prefix, token.is_active) == (
        charlie,
        "nightly-training",
        key[:8],
        True,
    )
    assert key not in str(list(ApiToken.objects.values()))


def test_admin_token_uploads_a_bundle_201(db, model_store, demo_bundle_dir, charlie):
    key = _create_token("charlie")

    response = _token_client(key).post(URL, {"bundle": _zip(demo_bundle_dir), "promote": "true"})

    assert response.status_code == 201, response.json()
    assert (response.json()["version"], response.json()["status"]) == (1, "production")
    version = ModelVersion.objects.get()
    assert version.registered_by == charlie and version.promoted_by == charlie
    assert ApiToken.objects.get().last_used_at is not None


@pytest.mark.parametrize("username", ["alice", "auditor"])
def test_command_refuses_a_token_for_a_non_admin(alice, auditor, username):
    with pytest.raises(CommandError, match=f"User '{username}' is not an admin"):
        _create_token(username)
    assert ApiToken.objects.count() == 0


def test_command_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        _create_token("nobody")


def test_revoked_and_unknown_tokens_are_401_json(db, model_store, demo_bundle_dir, charlie):
    key = _create_token("charlie")
    ApiToken.objects.update(is_active=False)

    for bad in (key, "not-a-token-anyone-issued"):
        response = _token_client(bad).post(URL, {"bundle": _zip(demo_bundle_dir)})
        assert response.status_code == 401
        assert response.json() == {
            "error": "not_authenticated",
            "detail": "Invalid, expired or revoked token.",
            "fields": {},
        }
    assert RegisteredModel.objects.count() == 0


def test_a_token_whose_admin_lost_the_role_cannot_upload(db, model_store, demo_bundle_dir, charlie):
    key = _create_token("charlie")
    charlie.profile.role = "clinician"
    charlie.profile.save()

    response = _token_client(key).post(URL, {"bundle": _zip(demo_bundle_dir)})

    # The role changed: the token is revoked (issue 15), not merely refused.
    assert (response.status_code, response.json()["error"]) == (401, "not_authenticated")
    assert ApiToken.objects.get().is_active is False
    assert RegisteredModel.objects.count() == 0


def test_service_token_may_not_upload_and_user_token_may_not_ingest(
    db, model_store, demo_bundle_dir, service_client, charlie
):
    refused = service_client.post(URL, {"bundle": _zip(demo_bundle_dir)})
    assert (refused.status_code, refused.json()["error"]) == (403, "permission_denied")
    assert RegisteredModel.objects.count() == 0

    # An admin's token is a person, not a scoring service: ingest stays service-only.
    ingest = _token_client(_create_token("charlie")).post(
        "/api/v1/predictions/", {"model": "icu-mortality-30d"}, format="json"
    )
    assert (ingest.status_code, ingest.json()["error"]) == (403, "permission_denied")
