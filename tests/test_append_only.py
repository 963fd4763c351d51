"""Clinicians' actions, audit records and registry promotions are append-only: every path that could
change or remove one is tried (the ORM, the Django admin as a superuser, the API) and each leaves
the record exactly as written."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import ProtectedError
from django.test import Client, RequestFactory

from common.models import AppendOnlyError
from models_registry.models import Promotion
from patients.models import AlertAction, AuditEvent
from tests.fixtures.factories import model_version_create, prediction_create

pytestmark = pytest.mark.django_db

MODELS = [AlertAction, AuditEvent, Promotion]


@pytest.fixture
def records(alice, alice_client):
    """One row of each append-only model, written the way the app writes them."""
    version = model_version_create()
    prediction = prediction_create(model_version=version, unit="MICU", risk=0.71)
    alert = prediction.alert
    response = alice_client.post(
        f"/api/v1/alerts/{alert.pk}/actions/",
        {"action": "dismiss", "reason": "already_aware", "comment": "as written"},
        content_type="application/json",
    )
    assert response.status_code == 201
    Promotion.objects.create(version=version, user=None, gate_passed=True, gate={"passed": True})
    return {
        AlertAction: AlertAction.objects.get(),
        AuditEvent: AuditEvent.objects.order_by("pk").first(),
        Promotion: Promotion.objects.get(),
        "alert": alert,
    }


def snapshot() -> dict:
    return {model: list(model.objects.order_by("pk").values()) for model in MODELS}


@pytest.fixture
def superuser_client(db) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.org", "x-unused-password-x")
    client = Client()
    client.force_login(user)
    return client


# A text field of each model that an edit would change.
EDITABLE = {AlertAction: "comment", AuditEvent: "action", Promotion: "override_reason"}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_the_orm_refuses_every_update_and_delete(records, model):
    before = snapshot()
    row = records[model]
    field = EDITABLE[model]
    attempts = [
        lambda: model.objects.update(**{field: "edited"}),
        lambda: model.objects.filter(pk=row.pk).update(**{field: "edited"}),
        lambda: model.objects.all().delete(),
        lambda: model.objects.filter(pk=row.pk).delete(),
        lambda: model.objects.bulk_update([row], [field]),
        lambda: model.objects.update_or_create(pk=row.pk, defaults={field: "edited"}),
        lambda: row.delete(),
    ]
    for attempt in attempts:
        # Each in its own savepoint: bulk_update fails inside an atomic block of its own.
        with pytest.raises(AppendOnlyError), transaction.atomic():
            attempt()
    setattr(row, field, "edited")
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        row.save(update_fields=[field])
    assert snapshot() == before


def test_related_managers_and_cascades_cannot_remove_records(records, alice):
    before = snapshot()
    alert = records["alert"]
    with pytest.raises(AppendOnlyError):
        alert.actions.update(comment="edited")
    with pytest.raises(AppendOnlyError):
        alert.actions.all().delete()
    # Deleting what a record points at would take the record with it: PROTECT refuses.
    with pytest.raises(ProtectedError):
        alert.delete()
    with pytest.raises(ProtectedError):
        alice.delete()
    with pytest.raises(ProtectedError):
        records[Promotion].version.delete()
    assert snapshot() == before


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_the_admin_shows_records_read_only_even_to_a_superuser(records, superuser_client, model):
    before = snapshot()
    row = records[model]
    model_admin = admin.site._registry[model]
    request = RequestFactory().get("/admin/")
    request.user = get_user_model().objects.get(username="root")
    assert model_admin.has_view_permission(request, row)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, row)
    assert not model_admin.has_delete_permission(request, row)
    assert "delete_selected" not in model_admin.get_actions(request)

    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}"
    listing = superuser_client.get(f"{base}/")
    assert listing.status_code == 200
    page = superuser_client.get(f"{base}/{row.pk}/change/")
    assert page.status_code == 200  # the view-only page
    assert b'name="_save"' not in page.content
    assert b"deletelink" not in page.content

    field = EDITABLE[model]
    assert superuser_client.post(f"{base}/{row.pk}/change/", {field: "edited"}).status_code == 403
    assert superuser_client.get(f"{base}/{row.pk}/delete/").status_code == 403
    assert superuser_client.post(f"{base}/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert superuser_client.get(f"{base}/add/").status_code == 403
    bulk = superuser_client.post(
        f"{base}/", {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
    )
    assert bulk.status_code in (200, 302)  # "No action selected": the action does not exist
    after = snapshot()
    # Nothing changed or went; the only new rows are the audit records of these admin views.
    for each in MODELS:
        assert after[each][: len(before[each])] == before[each]
    added = after[AuditEvent][len(before[AuditEvent]) :]
    assert all(r["action"].startswith("admin_") for r in added)
    if model is not Promotion:  # the registry's promotion audit holds no patient data
        assert added
    assert all(after[each] == before[each] for each in MODELS if each is not AuditEvent)


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_the_actions_api_takes_no_edit_or_delete(records, alice_client, charlie_client, method):
    before = snapshot()
    alert = records["alert"]
    action_id = records[AlertAction].pk
    for client in (alice_client, charlie_client):
        response = getattr(client, method)(
            f"/api/v1/alerts/{alert.pk}/actions/",
            {"action": "accept", "reason": "treatment_changed"},
            content_type="application/json",
        )
        assert response.status_code == 405
        assert response.json()["error"] == "method_not_allowed"
        # Nor is any single action addressable.
        response = getattr(client, method)(
            f"/api/v1/alerts/{alert.pk}/actions/{action_id}/", {}, content_type="application/json"
        )
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    # The audit search page only reads.
    assert charlie_client.post("/audit/", {"action": "export"}).status_code == 405
    assert snapshot() == before
