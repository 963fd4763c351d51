"""Fixtures for the CDS Hooks and SMART tests: the fake EHR registered with Sightline, its
practitioners mapped to alice (MICU) and bob (CCU), a production model version and CDS calls."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from interop.models import PractitionerMapping, RegisteredEhr
from interop.tests.test_fhir import fhir_bundle  # noqa: F401 (a fixture, shared by the FHIR test modules)
from models_registry.models import ModelVersion
from tests.fixtures.fake_ehr import FakeEhr

BASE = "http://testserver"
ALICE_PRACTITIONER = "Practitioner/123"
BOB_PRACTITIONER = "Practitioner/456"


@pytest.fixture
def cds_settings(settings):
    settings.CDS_PUBLIC_BASE_URL = BASE
    return settings


@pytest.fixture
def ehr(db, fake_ehr: FakeEhr, cds_settings) -> RegisteredEhr:
    return RegisteredEhr.objects.create(
        iss=fake_ehr.iss, name="Fake EHR", jwks=fake_ehr.jwks(), client_id="sightline"
    )


@pytest.fixture
def mapped(ehr, alice, bob):
    PractitionerMapping.objects.create(ehr=ehr, fhir_user=ALICE_PRACTITIONER, user=alice)
    PractitionerMapping.objects.create(ehr=ehr, fhir_user=BOB_PRACTITIONER, user=bob)
    return {"alice": ALICE_PRACTITIONER, "bob": BOB_PRACTITIONER}


@pytest.fixture
def production_version(ui_model_version) -> ModelVersion:
    ModelVersion.objects.filter(pk=ui_model_version.pk).update(status=ModelVersion.Status.PRODUCTION)
    ui_model_version.refresh_from_db()
    return ui_model_version


def hook_body(patient_id: str, user_id: str = ALICE_PRACTITIONER, **extra) -> dict:
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "http://127.0.0.1:1/fhir",
        "context": {"userId": user_id, "patientId": patient_id},
    }
    body.update(extra)
    return body


class CdsClient:
    """POSTs to the CDS service with a fresh token from the fake EHR (or the token given)."""

    def __init__(self, fake_ehr: FakeEhr) -> None:
        self.fake_ehr = fake_ehr
        self.client = Client()

    def url(self, service_id: str, feedback: bool = False) -> str:
        return f"/cds-services/{service_id}" + ("/feedback" if feedback else "")

    def post(self, path: str, body, token: str | None = None, **kwargs):
        token = token if token is not None else self.fake_ehr.cds_jwt(BASE + path)
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        return self.client.post(path, body, content_type="application/json", **headers, **kwargs)

    def call(self, service_id: str, body: dict, token: str | None = None):
        return self.post(self.url(service_id), body, token)

    def feedback(self, service_id: str, body: dict, token: str | None = None):
        return self.post(self.url(service_id, feedback=True), body, token)


@pytest.fixture
def cds(fake_ehr, ehr) -> CdsClient:
    return CdsClient(fake_ehr)
