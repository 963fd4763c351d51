"""The Model Facts label (HTML with print CSS, and PDF) and the HTI-1 source attributes JSON."""

import re
import zlib

import pytest
import yaml
from django.urls import reverse

from models_registry.services import model_register
from models_registry.subgroups import version_subgroups_compute

FACTS = "/models/icu-mortality-30d/versions/1/facts/"
PDF = "/models/icu-mortality-30d/versions/1/facts.pdf"
ATTRIBUTES = "/api/v1/models/icu-mortality-30d/versions/1/source-attributes/"


@pytest.fixture
def computed(model_version, settings):
    settings.SUBGROUP_BOOTSTRAP_RESAMPLES = 20
    version_subgroups_compute(version_id=model_version.pk)
    model_version.refresh_from_db()
    return model_version


def _pdf_text(content: bytes) -> str:
    """The text drawn by the PDF's (zlib-compressed) content streams, as fpdf2 writes them.

    Each stream is cut by its dictionary's /Length, not by searching for "endstream": compressed bytes may end
    in a carriage return, which an end-of-line pattern would take off and so drop that page's text.
    """
    text = []
    for match in re.finditer(rb"/Length (\d+)[^>]*>>\s*stream\r?\n", content):
        stream = content[match.end() : match.end() + int(match.group(1))]
        try:
            text.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            continue  # a font or image stream
    return "\n".join(text).replace("\\(", "(").replace("\\)", ")")


def _attributes(body: dict) -> dict:
    return {a["id"]: a for c in body["categories"] for a in c["attributes"]}


def test_facts_page_prints_every_item_of_the_label(computed, alice_client):
    response = alice_client.get(FACTS)

    assert response.status_code == 200
    body = response.content.decode()
    card = alice_client.get("/api/v1/models/icu-mortality-30d/versions/1/card/").json()
    auroc = card["performance"]["model"]["auroc"]
    assert "Model Facts: icu-mortality-30d" in body and "death within 30 days of ICU admission" in body
    assert "Decision support for ICU clinicians" in body  # intended use
    assert "Do not use for triage" in body  # when not to use (source_attributes.out_of_scope_use)
    assert "Warning:</strong> Demonstration model" in body
    assert "RHC study (Connors et al., JAMA 1996" in body  # training cohort
    assert "1,147 held-out labelled patients" in body  # reference cohort
    assert '<th scope="row">Creatinine</th><td>mg/dL</td><td>LIS</td><td>LOINC:2160-0</td>' in body
    assert f"{auroc['value']:.2f} ({auroc['ci_low']:.2f}–{auroc['ci_high']:.2f})" in body
    assert "Calibration slope" in body
    assert 'id="facts-subgroups"' in body and "<td>Black or African American</td>" in body
    for flag in computed.checks["subgroup_disparity"]["flags"]:
        assert flag["message"] in body
    assert f"<td>{round(100 * computed.tier_high)}%</td>" in body  # thresholds read as risks do
    assert re.findall(r"\d\.\d{4,}", re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.S)) == []
    assert "Trained on five US teaching hospitals" in body  # known failure modes
    assert "interventional TreeExplainer" in body and "200 rows" in body  # method and background
    assert "<strong>pass</strong> — SHAP values add up to the model output" in body
    assert "Promoted " in body and "the command line (no user)" in body
    assert "@media print" in alice_client.get("/static/models_registry/model_facts.css").getvalue().decode()


def test_facts_pdf_is_a_pdf_of_the_same_label(computed, alice_client):
    response = alice_client.get(PDF)

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    text = _pdf_text(response.content)
    assert "Model Facts: icu-mortality-30d v1" in text
    assert "When not to use:" in text and "Do not use for triage" in text
    assert "too few to judge" not in text  # every demo subgroup is large enough at the default floor
    assert "Registration checks" in text and "Subgroups" in text and "Black or African American" in text


def test_card_links_the_label(model_version, alice_client):
    body = alice_client.get("/models/icu-mortality-30d/versions/1/").content.decode()
    assert f'href="{FACTS}" id="model-facts-link"' in body and f'href="{PDF}"' in body


def test_every_alert_page_links_the_label_of_its_version(db, alice_client):
    from tests.fixtures.factories import model_version_create, prediction_create

    prediction = prediction_create(model_version=model_version_create(version=3), risk=0.71)
    body = alice_client.get(reverse("alert-detail", args=[prediction.alert.pk])).content.decode()
    assert 'href="/models/icu-mortality-30d/versions/3/facts/" class="model-facts-link"' in body


def test_facts_need_a_login_and_answer_404_for_a_missing_version(model_version, client, alice_client):
    assert client.get(FACTS).status_code == 302
    assert client.get(PDF).status_code == 302
    assert alice_client.get("/models/icu-mortality-30d/versions/7/facts/").status_code == 404


def test_source_attributes_say_not_provided_where_the_bundle_is_silent(computed, alice_client):
    response = alice_client.get(ATTRIBUTES)

    assert response.status_code == 200
    attributes = _attributes(response.json())
    assert len(attributes) == 29
    assert attributes["developer"]["value"].startswith("Sightline open-source project")
    assert attributes["developer"]["source"] == "bundle.yaml source_attributes.developer"
    assert attributes["external_validation_party"] == {
        "id": "external_validation_party",
        "title": "Party that conducted the external testing",
        "value": "not provided",
        "provided": False,
        "source": None,
    }
    assert attributes["known_risks_and_limitations"]["source"] == "bundle.yaml known_failure_modes"
    assert (
        attributes["demographic_inputs"]["value"] == "Model inputs: Sex, Age. Reported but not inputs: Race."
    )
    assert attributes["validity_test_data"]["value"].startswith("AUROC 0.")
    flags = len(computed.checks["subgroup_disparity"]["flags"])
    assert f"over 5 subgroups; {flags} disparity flag(s)" in attributes["fairness_test_data"]["value"]


def test_a_silent_bundle_provides_nothing_but_the_computed_attributes(
    db, model_store, bad_bundle, alice_client
):
    path = bad_bundle()
    spec = yaml.safe_load((path / "bundle.yaml").read_text())
    for key in ("source_attributes", "subgroups", "intended_use", "known_failure_modes", "warnings"):
        spec.pop(key)
    (path / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    model_register(path=path)

    attributes = _attributes(alice_client.get(ATTRIBUTES).json())

    provided = sorted(a for a, v in attributes.items() if v["provided"])
    assert provided == ["validity_test_data"]  # subgroup figures not computed yet, nothing declared
    assert attributes["intended_use"]["value"] == "not provided"
    body = alice_client.get(FACTS).content.decode()
    assert "none declared in bundle.yaml" in body and "Subgroup figures: pending." in body


def test_source_attributes_need_a_person(model_version, client, service_client):
    assert client.get(ATTRIBUTES).status_code == 401
    assert service_client.get(ATTRIBUTES).status_code == 403
