"""/audit/: auditors and admins search the audit log by user, patient, action and dates; paginated;
clinicians are refused; reading the log is itself recorded."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.urls import reverse

from clinician_ui.audit_log import PAGE_SIZE
from patients.models import AuditEvent
from tests.fixtures.factories import prediction_create

URL = reverse("audit-log")


def event_at(event: AuditEvent, when: datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {AuditEvent._meta.db_table} SET at = %s WHERE id = %s", [when, event.pk])  # noqa: S608


@pytest.fixture
def log(ui_model_version, alice, bob):
    """Alice viewed a MICU alert on 2026-11-02, Bob a CCU alert on 2026-11-03, Alice dismissed on 11-04."""
    micu = prediction_create(model_version=ui_model_version, unit="MICU", risk=0.71)
    ccu = prediction_create(model_version=ui_model_version, unit="CCU", risk=0.81)
    rows = [
        (alice, micu, "view_alert", datetime(2026, 11, 2, 8, 0, tzinfo=UTC)),
        (bob, ccu, "view_alert", datetime(2026, 11, 3, 8, 0, tzinfo=UTC)),
        (alice, micu, "alert_dismiss", datetime(2026, 11, 4, 23, 59, tzinfo=UTC)),
    ]
    events = []
    for user, prediction, action, when in rows:
        event = AuditEvent.objects.create(
            user=user, patient=prediction.patient, prediction=prediction, action=action, path=f"/x/{action}"
        )
        event_at(event, when)
        events.append(event)
    return {"micu": micu, "ccu": ccu, "events": events}


def listed(response) -> list[int]:
    return [e.pk for e in response.context["page"].object_list]


def test_auditor_and_admin_see_the_log_newest_first(auditor_client, charlie_client, log):
    for client in (auditor_client, charlie_client):
        response = client.get(URL)
        assert response.status_code == 200
        ids = listed(response)
        assert ids[-3:] == [e.pk for e in reversed(log["events"])]
    html = auditor_client.get(URL).content.decode()
    # Both identifiers of the patient a record names.
    patient = log["micu"].patient
    assert f"{patient.display_name} · ID {patient.external_id}" in html
    assert "alert_dismiss" in html
    assert 'href="/audit/" aria-current="page">Audit log</a>' in html


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"user": "ALICE"}, [2, 0]),
        ({"patient": "MICU"}, []),
        ({"action": "view_alert"}, [1, 0]),
        ({"date_from": "2026-11-03"}, [2, 1]),
        ({"date_to": "2026-11-03"}, [1, 0]),
        ({"date_from": "2026-11-04", "date_to": "2026-11-04"}, [2]),
        ({"user": "alice", "action": "view_alert", "date_to": "2026-11-02"}, [0]),
    ],
)
def test_search(auditor_client, log, params, expected):
    response = auditor_client.get(URL, params)
    ids = [i for i in listed(response) if i in {e.pk for e in log["events"]}]
    assert ids == [log["events"][i].pk for i in expected]


def test_search_by_patient_external_id(auditor_client, log):
    response = auditor_client.get(URL, {"patient": log["ccu"].patient.external_id})
    assert listed(response) == [log["events"][1].pk]


def test_bad_dates_are_shown_on_the_form_not_a_500(auditor_client, log):
    response = auditor_client.get(URL, {"date_from": "2026-11-05", "date_to": "2026-11-01"})
    assert response.status_code == 200
    assert response.context["page"] is None
    html = response.content.decode()
    assert "Must be on or after From." in html
    assert auditor_client.get(URL, {"date_from": "not-a-date"}).context["page"] is None


def test_paginated(auditor, auditor_client, ui_model_version):
    for i in range(PAGE_SIZE + 5):
        AuditEvent.objects.create(user=auditor, action="view_worklist", path=f"/?n={i}")
    first = auditor_client.get(URL, {"action": "view_worklist"})
    assert len(first.context["page"].object_list) == PAGE_SIZE
    assert "Page 1 of 2" in first.content.decode()
    assert 'href="?action=view_worklist&amp;page=2"' in first.content.decode()
    second = auditor_client.get(URL, {"action": "view_worklist", "page": 2})
    # Five older ones on page two (the audit page's own records are "view_audit_log").
    assert [e.path for e in second.context["page"].object_list] == [f"/?n={i}" for i in range(4, -1, -1)]


def test_clinicians_are_refused_and_anonymous_sent_to_login(client, alice_client, log):
    assert alice_client.get(URL).status_code == 403
    assert 'href="/audit/"' not in alice_client.get(reverse("worklist")).content.decode()
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_reading_the_log_is_recorded(auditor, auditor_client, log):
    auditor_client.get(URL, {"user": "alice"})
    event = AuditEvent.objects.filter(action="view_audit_log").get()
    assert (event.user, event.path) == (auditor, "/audit/?user=alice [2 of 2 records]")


def test_reading_the_log_records_the_patients_it_shows(auditor, auditor_client, log):
    """Pen test finding 4: the page shows patients' names and ids, so its record names them."""
    listing = AuditEvent.objects.create(
        user=auditor, action="worklist_json", path="/w", patients=["P-LIST-9"]
    )
    response = auditor_client.get(URL)
    assert "P-LIST-9" in response.content.decode()
    event = AuditEvent.objects.filter(action="view_audit_log").get()
    named = {log["micu"].patient.external_id, log["ccu"].patient.external_id, "P-LIST-9"}
    assert (event.patients, event.rows) == (sorted(named), 4)
    assert event.path == "/audit/ [4 of 4 records]"
    # A search showing only Bob's record names only Bob's patient.
    auditor_client.get(URL, {"user": "bob"})
    latest = AuditEvent.objects.filter(action="view_audit_log").latest("id")
    assert (latest.patients, latest.rows) == ([log["ccu"].patient.external_id], 1)
    assert listing.pk


def test_query_count_is_constant(auditor_client, log, django_assert_num_queries):
    # session, user, profile, count, page of events with user and patient, audit insert.
    with django_assert_num_queries(6):
        auditor_client.get(URL)
