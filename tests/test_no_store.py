"""Pen test finding 5: only worklist.json said Cache-Control: no-store; every other page and API
answer carrying patient data could be kept by a shared ward PC's browser cache (ASVS 8.2.1)."""

import pytest
from django.urls import reverse

from tests.fixtures.factories import prediction_create

pytestmark = pytest.mark.django_db


def test_every_answer_with_patient_data_says_no_store(alice_client, charlie_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, unit="MICU", risk=0.71)
    answers = {
        "worklist": alice_client.get(reverse("worklist")),
        "worklist.json": alice_client.get(reverse("worklist-json")),
        "alert page": alice_client.get(reverse("alert-detail", args=[prediction.alert.pk])),
        "explanation json": alice_client.get(reverse("explanation-json", args=[prediction.pk])),
        "explanation api": alice_client.get(f"/api/v1/predictions/{prediction.pk}/explanation/"),
        "fhir": alice_client.get(f"/fhir/RiskAssessment/{prediction.pk}"),
        "audit log": charlie_client.get(reverse("audit-log")),
        "monitoring": charlie_client.get("/monitoring/"),
        "a 404": alice_client.get("/no-such-page/"),
    }
    for name, response in answers.items():
        assert "no-store" in response.get("Cache-Control", ""), (name, response.status_code)
