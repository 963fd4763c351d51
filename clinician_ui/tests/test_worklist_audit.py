"""Every worklist answer that carries patients is audited with each of them (issue 15, finding 4):
the page and each worklist.json page; a 304 (nothing changed, no patient data) writes nothing."""

import pytest

from patients.models import AuditEvent
from tests.fixtures.factories import prediction_create


@pytest.fixture
def ward(ui_model_version):
    micu = [prediction_create(model_version=ui_model_version, unit="MICU", risk=r) for r in (0.8, 0.3, 0.05)]
    ccu = prediction_create(model_version=ui_model_version, unit="CCU", risk=0.9)
    return {"micu": micu, "ccu": ccu}


def test_the_worklist_page_records_every_patient_it_lists(alice, alice_client, ward):
    alice_client.get("/")

    event = AuditEvent.objects.get(action="view_worklist")
    assert event.user == alice and event.patient is None
    assert event.patients == sorted(p.patient.external_id for p in ward["micu"])
    assert event.rows == 3
    assert ward["ccu"].patient.external_id not in event.patients


def test_each_worklist_json_answer_is_audited_and_a_304_is_not(alice_client, ward):
    first = alice_client.get("/worklist.json")
    high = alice_client.get("/worklist.json", {"tier": "high", "page": 1})
    assert (first.status_code, high.status_code) == (200, 200)

    events = list(AuditEvent.objects.filter(action="worklist_json").order_by("id"))
    assert len(events) == 2
    assert events[0].patients == sorted(p.patient.external_id for p in ward["micu"])
    assert events[1].patients == [ward["micu"][0].patient.external_id]
    assert "tier=high" in events[1].path and "alerts 1 of 1" in events[1].path

    unchanged = alice_client.get("/worklist.json", HTTP_IF_NONE_MATCH=first["ETag"])
    assert unchanged.status_code == 304
    assert AuditEvent.objects.filter(action="worklist_json").count() == 2


def test_the_audit_log_finds_a_patient_shown_in_a_list(alice_client, auditor_client, ward):
    alice_client.get("/")
    patient = ward["micu"][1].patient.external_id

    page = auditor_client.get("/audit/", {"patient": patient}).content.decode()

    assert "view_worklist" in page and "3 patients" in page
