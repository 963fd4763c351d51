"""Pen test finding 12: three inputs answered 500. Each is a 400 naming what is wrong (a page number
past the last page but in range is that last page), and nothing is stored."""

import io
import json
import zipfile

import pytest
from django.urls import reverse

from models_registry.models import ModelVersion
from patients.models import Prediction

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("page", "99999999999999999999", "past any page"),
        ("low_page", "99999999999999999999", "past any page"),
        ("page", "1000001", "past any page"),
        ("page", "abc", "not a page number"),
        ("page", "0", "not a page number"),
        ("low_page", "-3", "not a page number"),
        ("page", "1e3", "not a page number"),
        ("page", "²", "not a page number"),
    ],
)
def test_a_page_number_that_is_no_page_is_a_400_naming_it(alice_client, ui_model_version, field, value, says):
    polled = alice_client.get(reverse("worklist-json"), {field: value})
    assert polled.status_code == 400
    body = polled.json()
    assert body["error"] == "invalid" and list(body["fields"]) == [field]
    assert body["detail"].startswith(f"{field}: ") and says in body["detail"]
    page = alice_client.get(reverse("worklist"), {field: value})
    assert page.status_code == 400
    html = page.content.decode()
    assert "<h1>Bad page number</h1>" in html and f"{field}: " in html and says in html
    assert 'href="/"' in html  # back to the worklist, in the site's frame (navigation, styles)
    assert '<link rel="stylesheet"' in html


def test_a_page_past_the_last_still_shows_the_last_page(alice_client, ui_model_version):
    """A ward's list shrinks under a clinician on page 3 and the live refresh keeps asking for
    page 3: a whole number past the end is the last page, not an error."""
    for name in ("worklist", "worklist-json"):
        assert alice_client.get(reverse(name), {"page": "999999", "low_page": "3"}).status_code == 200
    polled = alice_client.get(reverse("worklist-json"), {"page": "999999"})
    assert polled.json()["pages"]["alerts"]["number"] == 1


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
