"""Pen test finding 12: three inputs answered 500. Each is a 400 (or the last page) naming what is
wrong, and nothing is stored."""

import io
import json
import zipfile

import pytest
from django.urls import reverse

from models_registry.models import ModelVersion
from patients.models import Prediction

pytestmark = pytest.mark.django_db


def test_a_page_number_past_any_database_offset_shows_the_last_page(alice_client, ui_model_version):
    huge = "99999999999999999999"
    assert alice_client.get(reverse("worklist"), {"page": huge}).status_code == 200
    polled = alice_client.get(reverse("worklist-json"), {"page": huge, "low_page": huge})
    assert polled.status_code == 200
    assert polled.json()["pages"]["alerts"]["number"] >= 1


def test_a_100000_deep_json_array_to_fhir_is_a_400_operation_outcome(service_client):
    body = "[" * 100_000 + "]" * 100_000
    for content_type in ("application/fhir+json", "application/json"):
        response = service_client.generic("POST", "/fhir/", body, content_type=content_type)
        assert response.status_code == 400, content_type
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert "not valid JSON" in outcome["issue"][0]["diagnostics"]
    assert Prediction.objects.count() == 0


def test_a_model_zip_whose_member_fails_its_crc_is_a_400(db, model_store, demo_bundle_dir, charlie_client):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in sorted(demo_bundle_dir.iterdir()):
            archive.writestr(f"bundle/{file.name}", file.read_bytes())
    data = bytearray(buffer.getvalue())
    # Flip one byte inside bundle.yaml's stored data: the member's CRC no longer matches.
    marker = data.find(b"format_version")
    data[marker] ^= 0x01
    upload = io.BytesIO(bytes(data))
    upload.name = "bundle.zip"

    response = charlie_client.post("/api/v1/models/", {"bundle": upload})
    assert response.status_code == 400
    assert "damaged zip file" in response.json()["detail"]
    assert ModelVersion.objects.count() == 0
    assert json.loads(response.content)["error"]
