"""Who sees what: login required everywhere, units decide, 404 outside them, every view audited."""

import pytest
from django.urls import reverse

from patients.models import AlertView, AuditEvent
from tests.fixtures.factories import prediction_create


@pytest.fixture
def micu_alert(ui_model_version):
    return prediction_create(model_version=ui_model_version, unit="MICU", risk=0.71).alert


@pytest.fixture
def ccu_alert(ui_model_version):
    return prediction_create(model_version=ui_model_version, unit="CCU", risk=0.40).alert


def page_urls(alert) -> list[str]:
    prediction_id = alert.prediction_id
    return [
        reverse("worklist"),
        reverse("alert-detail", args=[alert.pk]),
        reverse("prediction-detail", args=[prediction_id]),
        reverse("explanation-json", args=[prediction_id]),
    ]


def test_anonymous_is_sent_to_login_from_every_page(client, micu_alert):
    for url in page_urls(micu_alert):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next="), url
    assert AuditEvent.objects.count() == 0


def test_anonymous_action_is_refused_with_json(client, micu_alert):
    response = client.post(
        reverse("alert-actions", args=[micu_alert.pk]),
        {"action": "dismiss", "reason": "already_aware"},
        content_type="application/json",
    )
    assert response.status_code == 401  # not authenticated (CONTRACT section 7), not 403
    assert response.json()["detail"] == "Authentication credentials were not provided."
    assert micu_alert.actions.count() == 0


def test_login_page_logs_in_and_lands_on_worklist(client, alice):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    response = client.post(
        reverse("login"), {"username": "alice", "password": "correct-horse-battery-staple"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("worklist")
    worklist = client.get(reverse("worklist"))
    assert worklist.status_code == 200
    assert b"alice" in worklist.content.lower()


def test_logout_ends_the_session(alice_client):
    response = alice_client.post(reverse("logout"))
    assert response.status_code == 302
    assert alice_client.get(reverse("worklist")).status_code == 302


def test_alice_sees_her_micu_alert(alice_client, micu_alert):
    for url in page_urls(micu_alert):
        assert alice_client.get(url).status_code == 200, url
    page = alice_client.get(reverse("alert-detail", args=[micu_alert.pk]))
    assert micu_alert.patient.display_name in page.content.decode()


def test_bob_gets_404_on_a_micu_alert_page_json_and_actions(bob_client, micu_alert):
    for url in page_urls(micu_alert)[1:]:
        assert bob_client.get(url).status_code == 404, url
    response = bob_client.post(
        reverse("alert-actions", args=[micu_alert.pk]),
        {"action": "dismiss", "reason": "already_aware"},
        content_type="application/json",
    )
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert micu_alert.actions.count() == 0
    # Bob's worklist does not list Alice's patient.
    assert micu_alert.patient.display_name not in bob_client.get(reverse("worklist")).content.decode()
    assert not AlertView.objects.filter(alert=micu_alert).exists()


def test_charlie_the_admin_sees_both_units(charlie_client, micu_alert, ccu_alert):
    for alert in (micu_alert, ccu_alert):
        for url in page_urls(alert):
            assert charlie_client.get(url).status_code == 200, url
    worklist = charlie_client.get(reverse("worklist")).content.decode()
    assert micu_alert.patient.display_name in worklist
    assert ccu_alert.patient.display_name in worklist


def test_every_view_writes_an_audit_row_with_user_patient_and_path(alice, alice_client, micu_alert):
    prediction = micu_alert.prediction
    expected = [
        (reverse("alert-detail", args=[micu_alert.pk]), "view_alert"),
        (reverse("prediction-detail", args=[prediction.pk]), "view_prediction"),
        (reverse("explanation-json", args=[prediction.pk]), "view_explanation_json"),
    ]
    for url, action in expected:
        alice_client.get(url)
        event = AuditEvent.objects.order_by("-id").first()
        assert (event.user, event.patient, event.prediction, event.path, event.action) == (
            alice,
            micu_alert.patient,
            prediction,
            url,
            action,
        )
        assert event.ip == "127.0.0.1"
    alice_client.get(reverse("worklist") + "?tier=high")
    event = AuditEvent.objects.order_by("-id").first()
    # A list: no single patient, but every patient it showed and how many rows.
    assert (event.user, event.action, event.path, event.patient, event.patients) == (
        alice,
        "view_worklist",
        "/?tier=high [alerts 1 of 1, low 0 of 0]",
        None,
        [micu_alert.patient.external_id],
    )


def test_a_refused_view_is_audited_as_refused_never_as_seen(bob, bob_client, micu_alert):
    """Browser walk finding: another unit's alert answered 404 and left no trace. Each attempt is now
    in the audit log as refused (the answer is the 404 of a missing one); none reads as seen."""
    prediction = micu_alert.prediction
    urls = [
        reverse("alert-detail", args=[micu_alert.pk]),
        reverse("prediction-detail", args=[prediction.pk]),
        reverse("explanation-json", args=[prediction.pk]),
        f"/api/v1/predictions/{prediction.pk}/explanation/",
    ]
    for url in urls:
        assert bob_client.get(url).status_code == 404, url
    events = AuditEvent.objects.filter(patient=micu_alert.patient).order_by("id")
    assert [(e.user, e.action, e.path, e.prediction) for e in events] == [
        (bob, "refused", url, prediction) for url in urls
    ]
    # A missing one is a plain 404: nothing to audit.
    assert bob_client.get(reverse("alert-detail", args=[micu_alert.pk + 999])).status_code == 404
    assert AuditEvent.objects.filter(action="refused").count() == len(urls)


def test_alert_view_records_first_shown_once(alice, alice_client, micu_alert):
    alice_client.get(reverse("alert-detail", args=[micu_alert.pk]))
    first = AlertView.objects.get(alert=micu_alert, user=alice).first_shown_at
    alice_client.get(reverse("alert-detail", args=[micu_alert.pk]))
    views = AlertView.objects.filter(alert=micu_alert)
    assert views.count() == 1
    assert views.get().first_shown_at == first
