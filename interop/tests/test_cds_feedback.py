"""CDS Hooks feedback: each EHR's card is its own, the clinician credited does not change with later
showings, and a feedback item delivered again changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Profile
from interop.models import CdsCard, CdsCardShown, PractitionerMapping, RegisteredEhr
from patients.models import AlertAction, AlertView
from tests.fixtures.factories import engine_results_set, prediction_create
from tests.fixtures.people import person_create

from .conftest import ALICE_PRACTITIONER, BASE, hook_body

SERVICE = "icu-mortality-30d"
SECOND_ISS = "https://second-ehr.example.org/fhir"
DANA_PRACTITIONER = "Practitioner/789"


@pytest.fixture
def high(production_version, mapped):
    prediction = prediction_create(model_version=production_version, unit="MICU", risk=0.71)
    engine_results_set(prediction)
    return prediction


@pytest.fixture
def dana(ehr):
    """A second clinician of the patient's unit (MICU), mapped in the fake EHR."""
    user = person_create(username="dana", role=Profile.Role.CLINICIAN, units=["MICU"])
    PractitionerMapping.objects.create(ehr=ehr, fhir_user=DANA_PRACTITIONER, user=user)
    return user


def _item(card_uuid: str, outcome: str = "accepted", at=None) -> dict:
    return {"card": card_uuid, "outcome": outcome, "outcomeTimestamp": (at or timezone.now()).isoformat()}


def test_two_ehrs_each_get_their_own_card_and_their_feedback_lands(cds, high, fake_ehr, alice):
    second = RegisteredEhr.objects.create(iss=SECOND_ISS, name="Second", jwks=fake_ehr.jwks())
    PractitionerMapping.objects.create(ehr=second, fhir_user=ALICE_PRACTITIONER, user=alice)

    def second_token(path: str) -> str:
        return fake_ehr.cds_jwt(BASE + path, iss=SECOND_ISS)

    patient = high.patient.external_id
    (first_card,) = cds.call(SERVICE, hook_body(patient)).json()["cards"]
    path = cds.url(SERVICE)
    (second_card,) = cds.call(SERVICE, hook_body(patient), token=second_token(path)).json()["cards"]
    assert first_card["uuid"] != second_card["uuid"]
    assert {(str(c.uuid), c.ehr.iss) for c in CdsCard.objects.select_related("ehr")} == {
        (first_card["uuid"], fake_ehr.iss),
        (second_card["uuid"], SECOND_ISS),
    }
    # Each EHR's card answers the same uuid again.
    again = cds.call(SERVICE, hook_body(patient), token=second_token(path)).json()["cards"][0]
    assert again["uuid"] == second_card["uuid"]

    feedback_path = cds.url(SERVICE, feedback=True)
    body = {"feedback": [_item(second_card["uuid"], "overridden")]}
    response = cds.feedback(SERVICE, body, token=second_token(feedback_path))
    assert response.json() == {"recorded": 1, "items": 1}
    (action,) = AlertAction.objects.all()
    assert (action.alert_id, action.user, action.action, action.channel) == (
        high.alert.pk,
        alice,
        "dismiss",
        "ehr",
    )
    # One EHR cannot give feedback on the other's card.
    stolen = cds.feedback(
        SERVICE, {"feedback": [_item(first_card["uuid"])]}, token=second_token(feedback_path)
    )
    assert (stolen.status_code, list(stolen.json()["fields"])) == (404, ["feedback[0].card"])
    assert AlertAction.objects.count() == 1


def test_the_clinician_who_saw_the_card_before_the_decision_is_credited(cds, high, dana, alice):
    patient = high.patient.external_id
    (card,) = cds.call(SERVICE, hook_body(patient)).json()["cards"]
    decided = timezone.now()
    # Dana opens the chart after Alice decided, before the EHR sends the feedback.
    cds.call(SERVICE, hook_body(patient, user_id=DANA_PRACTITIONER))
    assert cds.feedback(SERVICE, {"feedback": [_item(card["uuid"], at=decided)]}).json()["recorded"] == 1
    assert AlertAction.objects.get().user == alice


def test_a_repeated_feedback_item_changes_nothing_whoever_saw_the_card_since(cds, high, dana, alice):
    patient = high.patient.external_id
    (card,) = cds.call(SERVICE, hook_body(patient)).json()["cards"]
    # An EHR clock a little ahead of ours: the decision is stamped just after the next showing.
    body = {"feedback": [_item(card["uuid"], at=timezone.now() + timedelta(seconds=30))]}
    assert cds.feedback(SERVICE, body).json() == {"recorded": 1, "items": 1}
    cds.call(SERVICE, hook_body(patient, user_id=DANA_PRACTITIONER))
    assert cds.feedback(SERVICE, body).json() == {"recorded": 0, "items": 1}
    (action,) = AlertAction.objects.all()
    assert (action.user, action.action) == (alice, "accept")


def test_time_to_decision_is_floored_at_the_first_showing_to_that_clinician(cds, high, alice):
    patient = high.patient.external_id
    (card,) = cds.call(SERVICE, hook_body(patient)).json()["cards"]
    first_seen = timezone.now() - timedelta(minutes=10)
    CdsCardShown.objects.update(shown_at=first_seen)
    AlertView.objects.filter(alert=high.alert, user=alice).update(first_shown_at=first_seen)
    cds.call(SERVICE, hook_body(patient))  # shown to her again, now
    # The EHR's clock is behind ours: its decision time is before the card was first shown.
    body = {"feedback": [_item(card["uuid"], at=first_seen - timedelta(minutes=10))]}
    assert cds.feedback(SERVICE, body).json()["recorded"] == 1
    action = AlertAction.objects.get()
    assert (action.shown_at, action.seconds_to_decision) == (first_seen, 0.0)
