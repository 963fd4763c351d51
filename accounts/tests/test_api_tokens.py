"""Personal API tokens (issue 15, finding 9): scopes, expiry, and revocation when the user's role
changes; `create_api_token --scope --expires`; existing tokens keep their role's scopes on migrating."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, Profile
from tests.fixtures.factories import prediction_create
from tests.fixtures.people import person_create


def _token(username: str, *args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", username, *args, stdout=out, stderr=err)
    return out.getvalue().strip()


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _explanation(key: str, prediction):
    return _client(key).get(f"/api/v1/predictions/{prediction.pk}/explanation/")


def _card(key: str, version):
    name = version.registered_model.name
    return _client(key).get(f"/api/v1/models/{name}/versions/{version.version}/card/")


@pytest.fixture
def admin2(db):
    return person_create(username="admin2", role=Profile.Role.ADMIN)


def test_a_demoted_admins_token_no_longer_reads_their_new_units_patients(
    admin2, ui_model_version, monkeypatch
):
    """The finding as tried: create_user admin2 --role clinician --units CCU, then the old token."""
    monkeypatch.setenv("ADMIN2_PASSWORD", "a-long-enough-new-password-42")
    ccu = prediction_create(model_version=ui_model_version, unit="CCU")
    key = _token("admin2")
    assert _explanation(key, ccu).status_code == 200

    out = io.StringIO()
    call_command(
        "create_user", "admin2", "--role", "clinician", "--units", "CCU",
        "--password-from-env", "ADMIN2_PASSWORD", stdout=out,
    )  # fmt: skip
    assert "Revoked 1 API token(s) of admin2" in out.getvalue()

    response = _explanation(key, ccu)
    assert (response.status_code, response.json()["error"]) == (401, "not_authenticated")
    token = ApiToken.objects.get()
    assert (token.is_active, token.revoked_reason) == (False, "role changed from admin to clinician")


def test_a_role_changed_anywhere_else_voids_the_token_at_its_next_use(admin2, ui_model_version):
    micu = prediction_create(model_version=ui_model_version, unit="MICU")
    key = _token("admin2")
    Profile.objects.filter(user=admin2).update(role=Profile.Role.AUDITOR)

    assert _explanation(key, micu).status_code == 401
    assert ApiToken.objects.get().is_active is False
    # Made admin again, the old token stays revoked.
    Profile.objects.filter(user=admin2).update(role=Profile.Role.ADMIN)
    assert _explanation(key, micu).status_code == 401


def test_a_registry_token_reads_cards_but_no_patient(admin2, model_version):
    prediction = prediction_create(model_version=model_version, unit="MICU")
    key = _token("admin2", "--scope", "registry")

    assert _card(key, model_version).status_code == 200
    refused = _explanation(key, prediction)
    assert (refused.status_code, refused.json()["error"]) == (403, "permission_denied")
    assert "lacks the 'patient-data' scope" in refused.json()["detail"]
    fhir = _client(key).get(f"/fhir/RiskAssessment/{prediction.pk}")
    assert fhir.status_code == 403
    cohort = _client(key).get("/api/v1/cohort/", {"model": model_version.registered_model.name})
    assert cohort.status_code == 403


def test_a_patient_data_token_reads_patients_but_not_the_registry(admin2, model_version):
    prediction = prediction_create(model_version=model_version, unit="MICU")
    key = _token("admin2", "--scope", "patient-data")

    assert _explanation(key, prediction).status_code == 200
    card = _card(key, model_version)
    assert card.status_code == 403 and "lacks the 'registry' scope" in card.json()["detail"]
    upload = _client(key).post("/api/v1/models/", {})
    assert upload.status_code == 403 and "lacks the 'registry' scope" in upload.json()["detail"]


def test_an_expired_token_is_401(admin2, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, unit="MICU")
    key = _token("admin2", "--expires", "1")
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = _explanation(key, prediction)
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid, expired or revoked token."


def test_the_command_sets_scopes_and_expiry(admin2, settings):
    _token("admin2")
    default = ApiToken.objects.get()
    assert default.scopes == ["registry", "patient-data"] and default.issued_role == "admin"
    assert abs(default.expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)

    _token("admin2", "--scope", "registry,patient-data", "--scope", "registry", "--expires", "2d")
    latest = ApiToken.objects.order_by("-pk").first()
    assert latest.scopes == ["registry", "patient-data"]
    assert abs(latest.expires_at - (timezone.now() + timedelta(days=2))) < timedelta(minutes=1)

    for args, message in (
        (("--scope", "everything"), "Unknown scope 'everything'"),
        (("--expires", "400"), "at most 365 days"),
        (("--expires", "2020-01-01"), "must be in the future"),
        (("--expires", "soon"), "--expires 'soon'"),
    ):
        with pytest.raises(CommandError, match=message):
            _token("admin2", *args)
    assert ApiToken.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_existing_tokens_keep_the_scopes_their_role_had_on_migrating(migrator):
    old = migrator.apply_initial_migration([("accounts", "0001_initial")]).apps
    User = old.get_model("auth", "User")
    Token = old.get_model("accounts", "ApiToken")
    admin = User.objects.create(username="old-admin", password="!")
    old.get_model("accounts", "Profile").objects.create(user=admin, role="admin")
    nurse = User.objects.create(username="old-nurse", password="!")
    old.get_model("accounts", "Profile").objects.create(user=nurse, role="clinician", units=["MICU"])
    Token.objects.create(user=admin, key_hash="a" * 64, prefix="aaaa")
    Token.objects.create(user=nurse, key_hash="b" * 64, prefix="bbbb")

    new = migrator.apply_tested_migration([("accounts", "0002_api_token_scopes_expiry")]).apps
    tokens = {t.prefix: t for t in new.get_model("accounts", "ApiToken").objects.all()}
    assert (tokens["aaaa"].scopes, tokens["aaaa"].issued_role) == (["registry", "patient-data"], "admin")
    assert (tokens["bbbb"].scopes, tokens["bbbb"].issued_role) == ([], "clinician")
    assert all(t.is_active and t.expires_at > timezone.now() + timedelta(days=89) for t in tokens.values())
