"""CDS Hooks 2.0 against the fake EHR: discovery, cards from stored scores, feedback into the export."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from clinician_ui.selectors import score_detail_get
from interop.models import CdsCard, CdsCardShown, CdsServiceSetting, SeenJti
from models_registry.models import ModelFeature
from patients.models import AlertAction, AuditEvent
from tests.fixtures.factories import engine_results_set, prediction_create

from .cds_spec import card_problems, discovery_problems
from .conftest import ALICE_PRACTITIONER as ALICE
from .conftest import BASE, hook_body

SERVICE = "icu-mortality-30d"


@pytest.fixture
def high(production_version, alice):
    prediction = prediction_create(model_version=production_version, unit="MICU", risk=0.71)
    engine_results_set(prediction)
    return prediction


def test_discovery_lists_one_patient_view_service_per_production_model(client, production_version):
    ModelFeature.objects.filter(version=production_version, name="lactate").update(code="LOINC:2524-7")
    ModelFeature.objects.filter(version=production_version, name="creatinine").update(code="LOINC:2160-0")
    body = client.get("/cds-services").json()
    assert discovery_problems(body) == []
    (service,) = body["services"]
    assert (service["id"], service["hook"]) == (SERVICE, "patient-view")
    assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    assert service["prefetch"]["observations"] == (
        "Observation?patient={{context.patientId}}&code=http://loinc.org|2524-7,http://loinc.org|2160-0"
        "&_sort=-date"
    )


def test_discovery_without_production_model_is_empty(client, ui_model_version):
    assert client.get("/cds-services").json() == {"services": []}


def test_a_wrong_method_is_a_json_405_naming_the_right_one(client, production_version):
    for method, path, allowed in (
        ("get", f"/cds-services/{SERVICE}", "POST"),
        ("get", f"/cds-services/{SERVICE}/feedback", "POST"),
        ("post", "/cds-services", "GET"),
    ):
        response = getattr(client, method)(path)
        assert response.status_code == 405 and response["Allow"] == allowed, path
        assert response.json()["error"] == "method_not_allowed", path
        assert SeenJti.objects.count() == 0


def test_high_risk_card_numbers_equal_the_alert_page(cds, mapped, high, alice_client):
    response = cds.call(SERVICE, hook_body(high.patient.external_id))
    assert response.status_code == 200, response.content
    (card,) = response.json()["cards"]
    assert card_problems(card) == []
    detail = score_detail_get(prediction=high, alert=high.alert)
    assert card["indicator"] == "critical"
    # The alert page, as alice sees it, shows the same risk, range and outcome words.
    page = alice_client.get(f"/alerts/{high.alert.pk}/").content.decode()
    risk = re.search(r'<span class="risk-value">([^<]+)</span>', page).group(1)
    interval = re.search(r'id="risk-interval">([^<]+)</span>', page).group(1)
    meaning = re.search(r'id="risk-meaning">([^<]+)</span>', page).group(1)
    assert card["summary"] == f"High risk {risk} ({interval}): {meaning}"
    assert (risk, interval) == ("71%", detail.headline.interval_text) == ("71%", "calibrated range 64%–76%")
    assert len(card["summary"]) < 140
    # The factors, with value, unit, observed time and source system, and the calibration sentence.
    assert "- **Lactate**: 4.2 mmol/L, observed " in card["detail"]
    assert ", source LIS (raises risk)" in card["detail"]
    assert "Urine output (24 h)" in card["detail"]  # not measured: a data-quality flag
    assert detail.uncertainty.calibration_note in card["detail"]
    assert card["source"]["url"] == f"{BASE}/models/{SERVICE}/versions/1/"
    assert card["links"] == [
        {"label": "Open the explained alert in Sightline", "url": f"{BASE}/smart/launch", "type": "smart"}
    ]
    codes = [r["code"] for r in card["overrideReasons"]]
    assert codes == ["already_aware", "not_clinically_relevant", "data_error", "patient_comfort_care"]
    # The same alert answers the same card uuid; the call is audited with EHR, user and patient.
    again = cds.call(SERVICE, hook_body(high.patient.external_id)).json()["cards"][0]
    assert again["uuid"] == card["uuid"] and CdsCard.objects.count() == 1
    audit = AuditEvent.objects.filter(action="cds_patient_view").order_by("id")
    assert [(a.user.username, a.patient_id) for a in audit] == [("alice", high.patient_id)] * 2
    assert cds.fake_ehr.iss in audit[0].path and "Practitioner/123" in audit[0].path


def test_abstention_is_shown_as_such(cds, mapped, production_version):
    prediction = prediction_create(model_version=production_version, unit="MICU", risk=0.71)
    engine_results_set(prediction, abstain=True, abstain_reason="Inputs far from the reference set")
    (card,) = cds.call(SERVICE, hook_body(prediction.patient.external_id)).json()["cards"]
    assert card["summary"].startswith("Model abstains (High tier score 71% not reliable for this patient)")
    assert "The model abstains: Inputs far from the reference set." in card["detail"]
    assert card_problems(card) == []


def test_low_tier_gets_no_card_unless_the_model_asks_for_an_info_card(cds, mapped, production_version):
    low = prediction_create(model_version=production_version, unit="MICU", risk=0.1)
    engine_results_set(low)
    assert cds.call(SERVICE, hook_body(low.patient.external_id)).json() == {"cards": []}
    assert CdsCard.objects.count() == 0
    CdsServiceSetting.objects.create(registered_model=production_version.registered_model, low_tier="info")
    (card,) = cds.call(SERVICE, hook_body(low.patient.external_id)).json()["cards"]
    assert (card["indicator"], card["summary"][:13]) == ("info", "Low risk 10% ")
    assert card_problems(card) == []


def test_another_units_clinician_and_an_unmapped_user_get_no_card(cds, mapped, high):
    patient = high.patient.external_id
    assert cds.call(SERVICE, hook_body(patient, user_id="Practitioner/456")).json() == {"cards": []}
    assert cds.call(SERVICE, hook_body(patient, user_id="Practitioner/999")).json() == {"cards": []}
    assert CdsCard.objects.count() == 0


def test_unknown_patient_without_prefetch_is_412(cds, mapped, production_version):
    response = cds.call(SERVICE, hook_body("NOBODY"))
    assert response.status_code == 412
    assert response.json()["error"] == "precondition_failed"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hook": "order-select"}, "hook"),
        ({"hookInstance": ""}, "hookInstance"),
        ({"context": {"userId": "Practitioner/123"}}, "context.patientId"),
        ({"prefetch": ["not", "an", "object"]}, "prefetch"),
    ],
)
def test_bad_requests_name_the_field_and_store_nothing(cds, mapped, high, change, field):
    body = hook_body(high.patient.external_id) | change
    response = cds.call(SERVICE, body)
    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]
    assert SeenJti.objects.count() == 0 and CdsCard.objects.count() == 0
    # The refusal itself is on record, with the EHR and what it asked for.
    (audit,) = AuditEvent.objects.filter(action="cds_patient_view_refused")
    assert audit.path.endswith("; outcome refused 400 invalid]") and cds.fake_ehr.iss in audit.path


def _audit_rows():
    rows = AuditEvent.objects.filter(action__startswith="cds_patient_view").order_by("id")
    return [
        (a.action, a.user.username if a.user else None, a.patient_id, a.path.split("[", 1)[1]) for a in rows
    ]


def test_every_call_is_audited_with_ehr_user_patient_and_outcome(cds, mapped, high, production_version):
    low = prediction_create(model_version=production_version, unit="MICU", risk=0.1)
    engine_results_set(low)
    patient = high.patient.external_id
    iss = cds.fake_ehr.iss
    assert len(cds.call(SERVICE, hook_body(patient)).json()["cards"]) == 1
    assert cds.call(SERVICE, hook_body(patient, user_id="Practitioner/999")).json() == {"cards": []}
    assert cds.call(SERVICE, hook_body(patient, user_id="Practitioner/456")).json() == {"cards": []}
    assert cds.call(SERVICE, hook_body(low.patient.external_id)).json() == {"cards": []}
    assert cds.call(SERVICE, hook_body("NOBODY")).status_code == 412
    assert _audit_rows() == [
        (
            "cds_patient_view",
            "alice",
            high.patient_id,
            f"EHR {iss}; userId {ALICE}; patientId {patient}; outcome cards=1]",
        ),
        (
            "cds_patient_view",
            None,
            high.patient_id,
            f"EHR {iss}; userId Practitioner/999; patientId {patient}; outcome cards=0 "
            "(EHR user not mapped to a Sightline clinician)]",
        ),
        (
            "cds_patient_view",
            "bob",
            high.patient_id,
            f"EHR {iss}; userId Practitioner/456; patientId {patient}; outcome cards=0 "
            "(patient not visible to this user)]",
        ),
        (
            "cds_patient_view",
            "alice",
            low.patient_id,
            f"EHR {iss}; userId {ALICE}; patientId {low.patient.external_id}; outcome cards=0 "
            "(low tier gets no card)]",
        ),
        (
            "cds_patient_view_refused",
            "alice",
            None,
            f"EHR {iss}; userId {ALICE}; patientId NOBODY; outcome refused 412 precondition_failed]",
        ),
    ]


def test_unknown_service_is_404_json(cds, mapped, high):
    response = cds.call("no-such-model", hook_body(high.patient.external_id))
    assert (response.status_code, response.json()["error"]) == (404, "not_found")


def _feedback(card: dict, outcome: str, **extra) -> dict:
    item = {"card": card["uuid"], "outcome": outcome, "outcomeTimestamp": timezone.now().isoformat()}
    return {"feedback": [item | extra]}


def test_override_feedback_becomes_an_ehr_action_in_the_export(cds, mapped, high, auditor_client):
    (card,) = cds.call(SERVICE, hook_body(high.patient.external_id)).json()["cards"]
    reason = card["overrideReasons"][0]
    body = _feedback(card, "overridden", overrideReason={"reason": reason, "userComment": "Known, on plan"})
    response = cds.feedback(SERVICE, body)
    assert response.status_code == 200, response.content
    (action,) = AlertAction.objects.all()
    assert (action.user.username, action.action, action.reason, action.comment, action.channel) == (
        "alice",
        "dismiss",
        "already_aware",
        "Known, on plan",
        "ehr",
    )
    shown = CdsCardShown.objects.get().shown_at
    assert 0 <= action.seconds_to_decision <= (timezone.now() - shown).total_seconds()
    # The same feedback item again changes nothing.
    assert cds.feedback(SERVICE, body).json() == {"recorded": 0, "items": 1}
    assert AlertAction.objects.count() == 1
    day = timezone.now().date()
    export = auditor_client.get(
        "/api/v1/exports/overrides/", {"from": str(day - timedelta(days=1)), "to": str(day), "format": "csv"}
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [(r["alert_id"], r["action"], r["reason"], r["channel"]) for r in rows] == [
        (str(high.alert.pk), "dismiss", "already_aware", "ehr")
    ]


def test_accepted_feedback_is_an_accept(cds, mapped, high):
    (card,) = cds.call(SERVICE, hook_body(high.patient.external_id)).json()["cards"]
    assert cds.feedback(SERVICE, _feedback(card, "accepted")).status_code == 200
    action = AlertAction.objects.get()
    assert (action.action, action.reason, action.channel) == ("accept", "accepted_in_ehr", "ehr")
    high.alert.refresh_from_db()
    assert high.alert.state == "accepted"


@pytest.mark.parametrize(
    ("item", "field", "status"),
    [
        ({"outcome": "maybe"}, "feedback[0].outcome", 400),
        ({"outcomeTimestamp": "yesterday"}, "feedback[0].outcomeTimestamp", 400),
        ({"card": "not-a-uuid"}, "feedback[0].card", 400),
        ({"card": "5b0f7c1e-8d1b-4c55-9a57-3c0f5e3d2a61"}, "feedback[0].card", 404),
        ({"overrideReason": {"reason": {"code": "bored"}}}, "feedback[0].overrideReason.reason.code", 400),
    ],
)
def test_bad_feedback_names_the_field_and_records_nothing(cds, mapped, high, item, field, status):
    (card,) = cds.call(SERVICE, hook_body(high.patient.external_id)).json()["cards"]
    body = _feedback(card, "overridden")
    body["feedback"][0].update(item)
    response = cds.feedback(SERVICE, body)
    assert response.status_code == status
    assert list(response.json()["fields"]) == [field]
    assert AlertAction.objects.count() == 0
    (audit,) = AuditEvent.objects.filter(action="cds_feedback_refused")
    assert audit.path.endswith(f"outcome refused {status} {response.json()['error']}]")


def test_an_oversized_call_is_413_json_and_stores_nothing(cds, mapped, high, settings):
    settings.API_BODY_LIMITS = {**settings.API_BODY_LIMITS, "/cds-services/": 1000}
    body = hook_body(
        high.patient.external_id, prefetch={"patient": {"resourceType": "Patient", "x": "y" * 2000}}
    )
    response = cds.call(SERVICE, body)
    assert (response.status_code, response.json()["error"]) == (413, "payload_too_large")
    assert SeenJti.objects.count() == 0 and CdsCard.objects.count() == 0


def test_the_card_flags_the_values_the_alert_page_flags(cds, mapped, production_version, alice_client):
    """A recorded zero the alert page asks to check is in the card's detail too (engine.quality)."""
    production_version.spec = {
        **production_version.spec,
        "features": [{"name": "map", "kind": "numeric", "range": [10, 200], "expected": [20, 200]}],
    }
    production_version.save(update_fields=["spec"])
    prediction = prediction_create(model_version=production_version, unit="MICU", risk=0.71)
    features = {**prediction.features, "map": {**prediction.features["map"], "value": 10}}
    type(prediction).objects.filter(pk=prediction.pk).update(features=features)
    engine_results_set(prediction)

    (card,) = cds.call(SERVICE, hook_body(prediction.patient.external_id)).json()["cards"]

    text = "10 mmHg is at the edge of the accepted 10–200 mmHg: check the source"
    assert f"Check the source: Mean arterial pressure {text}." in card["detail"]
    assert text in alice_client.get(f"/alerts/{prediction.alert.pk}/").content.decode()
