"""A patient Sightline has no score for, whose prefetch carries the model's inputs: scored and explained
through the POST /fhir/ pipeline, then answered with a card like any other."""

from __future__ import annotations

import json

import pytest
import redis

from clinician_ui.selectors import score_detail_get
from clinician_ui.templatetags.sightline import percent
from explanations.models import Explanation
from explanations.tasks import explanation_compute_task
from interop.models import CdsServiceSetting, PractitionerMapping, RegisteredEhr
from patients.models import Prediction
from sightline.queues import now_queue

from .cds_spec import card_problems
from .conftest import ALICE_PRACTITIONER, BASE, CdsClient, hook_body

PATIENT = "cds-prefetch-1"


def _prefetch(model_version, payload: dict) -> dict:
    """Patient, Encounter (unit MICU) and a searchset of the coded Observations, plus an older
    duplicate of one of them that must not be the input."""
    observations = []
    for spec in model_version.features.filter(decision_time=True).exclude(code=""):
        entry = payload["features"].get(spec.name) or {}
        if entry.get("value") is None or not spec.code.startswith("LOINC:"):
            continue
        code = spec.code.split(":", 1)[1]
        quantity = {"value": entry["value"]} | ({"unit": spec.unit} if spec.unit else {})
        observations.append(
            {
                "resourceType": "Observation",
                "id": f"obs-{spec.name.replace('_', '-')}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": f"Patient/{PATIENT}"},
                "effectiveDateTime": entry["observed_at"],
                "valueQuantity": quantity,
            }
        )
    older = dict(observations[0], id="obs-older", effectiveDateTime="2000-01-01T00:00:00Z")
    return {
        "patient": {"resourceType": "Patient", "id": PATIENT, "identifier": [{"value": "MRN-77"}]},
        "encounter": {
            "resourceType": "Encounter",
            "id": "enc-1",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "ACUTE"},
            "location": [{"location": {"display": "MICU"}}],
        },
        "observations": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": o} for o in [older, *observations]],
        },
    }


@pytest.mark.django_db(transaction=True)
def test_prefetch_is_scored_explained_and_carded(
    settings, fake_ehr, alice, model_version, prediction_payload, celery_eager
):
    settings.CDS_PUBLIC_BASE_URL = BASE
    ehr = RegisteredEhr.objects.create(iss=fake_ehr.iss, jwks=fake_ehr.jwks(), client_id="sightline")
    PractitionerMapping.objects.create(ehr=ehr, fhir_user=ALICE_PRACTITIONER, user=alice)
    CdsServiceSetting.objects.create(registered_model=model_version.registered_model, low_tier="info")
    cds = CdsClient(fake_ehr)
    body = hook_body(PATIENT, prefetch=_prefetch(model_version, prediction_payload(0)))

    response = cds.call(model_version.registered_model.name, body)
    assert response.status_code == 200, response.content
    prediction = Prediction.objects.get(patient__external_id=PATIENT)
    assert (prediction.source, prediction.unit, prediction.external_id) == (
        "fhir",
        "MICU",
        f"fhir/cds-{body['hookInstance']}",
    )
    assert Explanation.objects.get(prediction=prediction).status == Explanation.Status.READY
    (card,) = response.json()["cards"]
    assert card_problems(card) == []
    # The card's figures are the stored score's (this demo patient's key inputs are partly not
    # measured in the prefetch, so the model may abstain; the card then says so).
    assert f" {percent(prediction.risk)}" in card["summary"]
    assert card["indicator"] == {"high": "critical", "medium": "warning", "low": "info"}[prediction.tier]
    assert "**Largest factors**" in card["detail"]
    # The newest Observation of a code is the input, never the older duplicate.
    assert "2000-01-01" not in str(prediction.features)

    # Called again, the patient now has a current score: no second prediction.
    again = cds.call(model_version.registered_model.name, hook_body(PATIENT, prefetch=body["prefetch"]))
    assert again.json()["cards"][0]["uuid"] == card["uuid"]
    assert Prediction.objects.filter(patient__external_id=PATIENT).count() == 1


def test_prefetch_with_a_wrong_unit_names_the_observation_and_stores_nothing(
    cds_settings, fake_ehr, alice, model_version, prediction_payload
):
    ehr = RegisteredEhr.objects.create(iss=fake_ehr.iss, jwks=fake_ehr.jwks(), client_id="sightline")
    PractitionerMapping.objects.create(ehr=ehr, fhir_user=ALICE_PRACTITIONER, user=alice)
    prefetch = _prefetch(model_version, prediction_payload(0))
    obs = prefetch["observations"]["entry"][1]["resource"]
    obs["valueQuantity"]["unit"] = "furlongs"
    response = CdsClient(fake_ehr).call(
        model_version.registered_model.name, hook_body(PATIENT, prefetch=prefetch)
    )
    assert response.status_code == 400
    body = response.json()
    assert "furlongs" in body["detail"] and list(body["fields"]) == ["prefetch"]
    assert not Prediction.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_without_eager_celery_the_first_card_lists_the_factors(
    settings, fake_ehr, alice, model_version, prediction_payload, worker_queue, redis_url
):
    """The prefetch's score is explained within the call (no worker runs here), claimed so the
    worker the ingest queued finds it done and computes nothing again."""
    settings.CDS_PUBLIC_BASE_URL = BASE
    ehr = RegisteredEhr.objects.create(iss=fake_ehr.iss, jwks=fake_ehr.jwks(), client_id="sightline")
    PractitionerMapping.objects.create(ehr=ehr, fhir_user=ALICE_PRACTITIONER, user=alice)
    CdsServiceSetting.objects.create(registered_model=model_version.registered_model, low_tier="info")
    body = hook_body(PATIENT, prefetch=_prefetch(model_version, prediction_payload(0)))

    response = CdsClient(fake_ehr).call(model_version.registered_model.name, body)

    assert response.status_code == 200, response.content
    (card,) = response.json()["cards"]
    explanation = Explanation.objects.get(prediction__patient__external_id=PATIENT)
    assert (explanation.status, explanation.attempts) == (Explanation.Status.READY, 1)
    assert "**Largest factors**" in card["detail"] and "open Sightline for the factors" not in card["detail"]
    # The factors are the stored explanation's, as the alert page ranks them.
    detail = score_detail_get(prediction=explanation.prediction, alert=None)
    ranked = [r for r in detail.rows if r.shap is not None][: settings.CDS_CARD_TOP_FACTORS]
    assert ranked and all(f"- **{r.label}**: " in card["detail"] for r in ranked)
    # The ingest still queued its task; when a worker runs it, it finds the explanation done.
    broker = redis.Redis.from_url(redis_url)
    queued = [json.loads(m) for q in (worker_queue, now_queue(worker_queue)) for m in broker.lrange(q, 0, -1)]
    tasks = [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in queued]
    assert ("explanations.tasks.explanation_compute_task", f"({explanation.pk},)") in tasks
    # (.result, not .get(): an earlier test in the same process may have run a worker in it.)
    assert explanation_compute_task.apply(args=(explanation.pk,)).result == Explanation.Status.READY
    explanation.refresh_from_db()
    assert explanation.attempts == 1
