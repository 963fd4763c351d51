"""POST /api/v1/alerts/{id}/actions/: append-only, idempotent on the client's key, time to decision
from first sight, the alert's state, who may act, and JSON errors naming the field."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from common.models import AppendOnlyError
from patients.models import Alert, AlertAction, AlertView
from tests.fixtures.factories import prediction_create


@pytest.fixture
def alert(ui_model_version) -> Alert:
    return prediction_create(model_version=ui_model_version, unit="MICU", risk=0.71).alert


def post(client, alert, **body):
    return client.post(reverse("alert-actions", args=[alert.pk]), body, content_type="application/json")


def test_dismiss_with_reason_is_recorded(alice, alice_client, alert):
    response = post(alice_client, alert, action="dismiss", reason="already_aware", comment="Seen on rounds.")
    assert response.status_code == 201
    body = response.json()
    assert body["action"] == "dismiss"
    assert body["reason"] == "already_aware"
    assert body["reason_label"] == "Already aware, plan in place"
    assert body["user"] == "alice"
    assert body["role"] == "clinician"
    assert body["alert_state"] == "dismissed"
    record = AlertAction.objects.get()
    assert (record.alert, record.user, record.comment) == (alert, alice, "Seen on rounds.")


def test_seconds_to_decision_counts_from_first_shown(alice, alice_client, alert):
    alice_client.get(reverse("alert-detail", args=[alert.pk]))
    shown = timezone.now() - timedelta(seconds=90)
    AlertView.objects.filter(alert=alert, user=alice).update(first_shown_at=shown)

    body = post(alice_client, alert, action="accept", reason="treatment_changed").json()
    record = AlertAction.objects.get(pk=body["id"])
    assert record.shown_at == shown
    assert 90 <= record.seconds_to_decision < 120
    assert body["seconds_to_decision"] == record.seconds_to_decision
    # Acting again does not restart the clock.
    again = post(alice_client, alert, action="escalate", reason="senior_review").json()
    assert again["seconds_to_decision"] > record.seconds_to_decision


def test_acting_without_having_seen_the_alert_starts_the_clock_then(alice, alice_client, alert):
    before = timezone.now()
    body = post(alice_client, alert, action="acknowledge", reason="reviewing").json()
    view = AlertView.objects.get(alert=alert, user=alice)
    assert view.first_shown_at >= before
    assert 0 <= body["seconds_to_decision"] < 5


def test_same_idempotency_key_is_one_action(alice_client, alert):
    first = post(alice_client, alert, action="dismiss", reason="data_error", idempotency_key="click-1")
    second = post(alice_client, alert, action="dismiss", reason="data_error", idempotency_key="click-1")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert AlertAction.objects.count() == 1


def test_without_a_key_every_post_is_an_action(alice_client, alert):
    post(alice_client, alert, action="acknowledge", reason="reviewing")
    post(alice_client, alert, action="acknowledge", reason="reviewing")
    assert AlertAction.objects.count() == 2
    assert len(set(AlertAction.objects.values_list("idempotency_key", flat=True))) == 2


def test_state_follows_the_latest_action(alice_client, alert):
    assert (
        post(alice_client, alert, action="acknowledge", reason="reviewing").json()["alert_state"]
        == "acknowledged"
    )
    alert.refresh_from_db()
    assert alert.state == Alert.State.ACKNOWLEDGED
    post(alice_client, alert, action="escalate", reason="outreach_team")
    alert.refresh_from_db()
    assert alert.state == Alert.State.ESCALATED
    assert list(alert.actions.values_list("action", flat=True)) == ["acknowledge", "escalate"]


def test_actions_are_append_only(alice_client, alert):
    post(alice_client, alert, action="dismiss", reason="already_aware")
    record = AlertAction.objects.get()
    with pytest.raises(AppendOnlyError):
        AlertAction.objects.update(reason="data_error")
    with pytest.raises(AppendOnlyError):
        AlertAction.objects.filter(pk=record.pk).delete()
    record.reason = "data_error"
    with pytest.raises(AppendOnlyError):
        record.save()
    with pytest.raises(AppendOnlyError):
        record.delete()
    assert AlertAction.objects.get().reason == "already_aware"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "snooze", "reason": "already_aware"}, "action"),
        ({"action": "dismiss", "reason": "felt_like_it"}, "reason"),
        ({"action": "acknowledge", "reason": "already_aware"}, "reason"),
        ({"reason": "already_aware"}, "action"),
        ({"action": "dismiss"}, "reason"),
        ({"action": "dismiss", "reason": "already_aware", "comment": "x" * 2001}, "comment"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_stores_nothing(alice_client, alert, body, field):
    response = alice_client.post(
        reverse("alert-actions", args=[alert.pk]), body, content_type="application/json"
    )
    assert response.status_code == 400
    error = response.json()
    assert error["error"] == "invalid"
    assert field in error["fields"]
    assert AlertAction.objects.count() == 0
    assert not AlertView.objects.exists()
    alert.refresh_from_db()
    assert alert.state == Alert.State.NEW


def test_malformed_json_is_a_json_400(alice_client, alert):
    response = alice_client.post(
        reverse("alert-actions", args=[alert.pk]), "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert AlertAction.objects.count() == 0


def test_auditor_may_not_act(auditor_client, alert):
    response = post(auditor_client, alert, action="dismiss", reason="already_aware")
    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"
    assert AlertAction.objects.count() == 0


def test_admin_may_act_on_any_unit(charlie_client, alert):
    response = post(charlie_client, alert, action="escalate", reason="specialist_consult")
    assert response.status_code == 201
    assert response.json()["role"] == "admin"


def test_session_post_without_csrf_token_is_refused(alice, alert):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = post(client, alert, action="dismiss", reason="already_aware")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert AlertAction.objects.count() == 0


def test_same_idempotency_key_with_another_action_is_a_conflict(alice_client, alert):
    first = post(alice_client, alert, action="dismiss", reason="data_error", idempotency_key="click-2")
    second = post(alice_client, alert, action="escalate", reason="senior_review", idempotency_key="click-2")
    assert first.status_code == 201
    assert second.status_code == 409
    body = second.json()
    assert body["error"] == "idempotency_conflict"
    assert "idempotency_key" in body["fields"]
    # Nothing of the second post is stored, and the alert keeps the state of the first.
    assert list(AlertAction.objects.values_list("action", flat=True)) == ["dismiss"]
    alert.refresh_from_db()
    assert alert.state == Alert.State.DISMISSED
    third = post(
        alice_client, alert, action="dismiss", reason="data_error", comment="x", idempotency_key="click-2"
    )
    assert third.status_code == 409
