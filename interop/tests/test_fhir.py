"""FHIR R4: a transaction Bundle in, a RiskAssessment out, both validated by fhir.resources."""

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.riskassessment import RiskAssessment

from patients.models import AuditEvent, Prediction

FHIR_JSON = "application/fhir+json"


@pytest.fixture
def fhir_bundle(model_version, prediction_payload):
    """A transaction Bundle carrying demo patient 0's coded measurements, on unit MICU."""
    payload = prediction_payload(0)
    codes = {f.name: f for f in model_version.features.all() if f.code}

    def build(**changes) -> dict:
        entries = [
            {
                "fullUrl": "urn:uuid:0b1b4a4e-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:example:mrn", "value": "FHIR-P-001"}],
                    "name": [{"family": "Doe", "given": ["Jane"]}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:0b1b4a4e-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "Encounter",
                    "status": "in-progress",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "ACUTE"},
                    "identifier": [{"value": "FHIR-E-001"}],
                    "subject": {"reference": "urn:uuid:0b1b4a4e-0000-4000-8000-000000000001"},
                    "location": [
                        {"location": {"display": "MICU"}},
                        {
                            "location": {"display": "7"},
                            "physicalType": {"coding": [{"code": "bd"}]},
                        },
                    ],
                },
                "request": {"method": "POST", "url": "Encounter"},
            },
        ]
        for name, spec in codes.items():
            entry = payload["features"].get(name) or {}
            if entry.get("value") is None:
                continue
            system, code = spec.code.split(":", 1)
            observation = {
                "resourceType": "Observation",
                "id": f"obs-{name.replace('_', '-')}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": spec.label}]},
                "subject": {"reference": "urn:uuid:0b1b4a4e-0000-4000-8000-000000000001"},
                "effectiveDateTime": entry["observed_at"],
                "valueQuantity": {"value": entry["value"]},
            }
            if spec.unit:
                observation["valueQuantity"]["unit"] = spec.unit
            entries.append({"resource": observation, "request": {"method": "POST", "url": "Observation"}})
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "identifier": {"system": "urn:example:run", "value": "run-1-P-001"},
            "timestamp": payload["scored_at"],
            "entry": entries,
        }
        bundle.update(changes)
        return bundle

    build.payload = payload
    return build


def _post(client, body):
    return client.post("/fhir/", body, format="json", HTTP_ACCEPT=FHIR_JSON)


def _observation(bundle: dict, name: str) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"].get("id") == f"obs-{name}")


def test_bundle_in_risk_assessment_out_round_trip(service_client, fhir_bundle, alice_client, alice):
    body = fhir_bundle()
    response = _post(service_client, body)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith(FHIR_JSON)
    answer = Bundle.model_validate(response.json())
    assert answer.type == "transaction-response"
    assert len(answer.entry) == len(body["entry"]) + 1
    assessment = answer.entry[-1].resource
    assert assessment.get_resource_type() == "RiskAssessment"
    assert answer.entry[-1].response.status == "201 Created"

    prediction = Prediction.objects.get()
    assert prediction.source == "fhir" and prediction.unit == "MICU" and prediction.bed == "7"
    assert prediction.patient.external_id == "FHIR-P-001" and prediction.encounter.external_id == "FHIR-E-001"
    creatinine = _observation(body, "creatinine")
    assert prediction.features["creatinine"]["value"] == creatinine["valueQuantity"]["value"]
    assert prediction.features["creatinine"]["source"]["reference"] == "Observation/obs-creatinine"
    # Features without a LOINC code were not sent: not measured, never imputed.
    assert prediction.features["apache_aps"]["value"] is None
    assert float(assessment.prediction[0].probabilityDecimal) == pytest.approx(prediction.risk)

    read = alice_client.get(f"/fhir/RiskAssessment/{prediction.pk}", HTTP_ACCEPT=FHIR_JSON)
    assert read.status_code == 200
    resource = RiskAssessment.model_validate(read.json())
    assert float(resource.prediction[0].probabilityDecimal) == pytest.approx(prediction.risk)
    assert resource.prediction[0].qualitativeRisk.text == prediction.tier
    assert resource.method.text == f"{prediction.model_version.registered_model.name} v1"
    assert resource.subject.identifier.value == "FHIR-P-001"
    assert resource.occurrenceDateTime is not None
    sent = {
        f"Observation/{e['resource']['id']}"
        for e in body["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }
    assert {b.reference for b in resource.basis} == sent
    assert (
        AuditEvent.objects.filter(user=alice, prediction=prediction, action="fhir_risk_assessment").count()
        == 1
    )

    # The same Bundle again is the same prediction (idempotent), answered 200 OK.
    again = _post(service_client, body)
    assert again.status_code == 200
    assert again.json()["entry"][-1]["response"]["status"] == "200 OK"
    assert again.json()["entry"][-1]["resource"]["id"] == str(prediction.pk)
    assert Prediction.objects.count() == 1


def test_risk_assessment_of_another_units_patient_is_404(
    service_client, fhir_bundle, bob_client, charlie_client
):
    assert _post(service_client, fhir_bundle()).status_code == 200
    prediction = Prediction.objects.get()
    response = bob_client.get(f"/fhir/RiskAssessment/{prediction.pk}")
    assert response.status_code == 404
    outcome = OperationOutcome.model_validate(response.json())
    assert outcome.issue[0].code == "not-found"
    assert charlie_client.get(f"/fhir/RiskAssessment/{prediction.pk}").status_code == 200
    # Service tokens are ingest-only.
    assert service_client.get(f"/fhir/RiskAssessment/{prediction.pk}").status_code == 403


def test_an_invalid_observation_is_rejected_with_an_operation_outcome(service_client, fhir_bundle):
    body = fhir_bundle()
    _observation(body, "creatinine")["valueQuantity"]["value"] = "high"
    response = _post(service_client, body)
    assert response.status_code == 400
    outcome = OperationOutcome.model_validate(response.json())
    assert "valueQuantity.value" in outcome.issue[0].diagnostics
    index = next(i for i, e in enumerate(body["entry"]) if e["resource"].get("id") == "obs-creatinine")
    assert outcome.issue[0].expression == [f"Bundle.entry[{index}].resource.valueQuantity.value"]
    assert Prediction.objects.count() == 0


def test_unknown_code_and_wrong_unit_name_the_observation(service_client, fhir_bundle):
    body = fhir_bundle()
    _observation(body, "sodium")["code"]["coding"][0]["code"] = "99999-9"
    response = _post(service_client, body)
    assert response.status_code == 400
    issue = OperationOutcome.model_validate(response.json()).issue[0]
    assert issue.code == "code-invalid" and "http://loinc.org|99999-9" in issue.diagnostics

    body = fhir_bundle()
    _observation(body, "creatinine")["valueQuantity"]["unit"] = "µmol/L"
    response = _post(service_client, body)
    assert response.status_code == 400
    issue = OperationOutcome.model_validate(response.json()).issue[0]
    assert issue.expression[0].endswith(".valueQuantity.unit")
    assert "mg/dL" in issue.diagnostics
    assert Prediction.objects.count() == 0


def test_ingest_rules_apply_to_fhir_too(service_client, fhir_bundle):
    body = fhir_bundle()
    _observation(body, "sodium")["valueQuantity"]["value"] = 500  # outside the plausible range
    response = _post(service_client, body)
    assert response.status_code == 400
    issue = OperationOutcome.model_validate(response.json()).issue[0]
    assert "plausible range" in issue.diagnostics
    assert issue.expression == [
        next(
            f"Bundle.entry[{i}].resource"
            for i, e in enumerate(body["entry"])
            if e["resource"].get("id") == "obs-sodium"
        )
    ]
    assert Prediction.objects.count() == 0


def test_only_service_tokens_post_bundles(fhir_bundle, charlie_client, client):
    assert charlie_client.post("/fhir/", fhir_bundle(), content_type=FHIR_JSON).status_code == 403
    response = client.post("/fhir/", fhir_bundle(), content_type=FHIR_JSON)
    assert response.status_code == 401
    OperationOutcome.model_validate(response.json())


PATIENT_CODED = "icu-mortality-30d-patient"


@pytest.fixture
def patient_coded(model_version, demo_bundle_dir, tmp_path):
    """The demo bundle whose schema codes age as FHIR:Patient.birthDate and sex_female as
    FHIR:Patient.gender (the demo schema leaves both uncoded), registered as another model."""
    import shutil

    import yaml

    from interop.fhir_resources import PATIENT_BIRTH_DATE, PATIENT_GENDER
    from models_registry.services import model_register

    out = tmp_path / "patient-coded"
    shutil.copytree(demo_bundle_dir, out)
    spec = yaml.safe_load((out / "bundle.yaml").read_text())
    spec["name"] = PATIENT_CODED
    codes = {"age": PATIENT_BIRTH_DATE, "sex_female": PATIENT_GENDER}
    for feature in spec["features"]:
        if feature["name"] in codes:
            feature["code"] = codes[feature["name"]]
    (out / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    version, _ = model_register(path=out, promote=True)
    return version


def _patient(body: dict) -> dict:
    return next(e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "Patient")


def _with_demographics(body: dict, *, birth_date: str | None, gender: str | None, start: str | None) -> dict:
    patient = _patient(body)
    patient["id"] = "pat-1"
    if birth_date is not None:
        patient["birthDate"] = birth_date
    if gender is not None:
        patient["gender"] = gender
    if start is not None:
        encounter = next(e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "Encounter")
        encounter["period"] = {"start": start}
    return body


def _post_to(client, body, model: str):
    return client.post(f"/fhir/?model={model}", body, format="json", HTTP_ACCEPT=FHIR_JSON)


def test_age_and_sex_come_from_the_patient_when_the_schema_codes_them(
    service_client, fhir_bundle, patient_coded, model_version
):
    # Age at the encounter's start: 1950-03-05 -> 2026-03-04 is 75 completed years, not 76.
    body = _with_demographics(
        fhir_bundle(), birth_date="1950-03-05", gender="female", start="2026-03-04T10:00:00Z"
    )
    response = _post_to(service_client, body, PATIENT_CODED)
    assert response.status_code == 200, response.content
    prediction = Prediction.objects.get(model_version=patient_coded)
    assert prediction.features["age"]["value"] == 75
    assert prediction.features["sex_female"]["value"] == 1  # stored as the model's 0/1
    assert prediction.features["age"]["source"]["reference"] == "Patient/pat-1"
    assessment = RiskAssessment.model_validate(response.json()["entry"][-1]["resource"])
    assert "Patient/pat-1" in {b.reference for b in assessment.basis}

    # The same Bundle to the demo schema (age and sex uncoded): both stay not measured.
    body["identifier"]["value"] = "run-2"
    assert _post_to(service_client, body, model_version.registered_model.name).status_code == 200
    plain = Prediction.objects.get(model_version=model_version)
    assert plain.features["age"]["value"] is None and plain.features["sex_female"]["value"] is None


def test_age_without_an_encounter_start_is_at_the_newest_observation(
    service_client, fhir_bundle, patient_coded
):
    body = _with_demographics(fhir_bundle(), birth_date="1960-06-15", gender="male", start=None)
    observations = [e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "Observation"]
    for i, obs in enumerate(observations):
        obs["effectiveDateTime"] = f"2026-01-{10 + i % 5:02d}T08:00:00Z"
    body["timestamp"] = "2026-01-20T00:00:00Z"
    newest = max(obs["effectiveDateTime"] for obs in observations)
    assert newest == "2026-01-14T08:00:00Z"
    assert _post_to(service_client, body, PATIENT_CODED).status_code == 200
    prediction = Prediction.objects.get(model_version=patient_coded)
    assert prediction.features["age"]["value"] == 65
    assert prediction.features["sex_female"]["value"] == 0


@pytest.mark.parametrize(
    ("birth_date", "gender", "value"),
    [("1950", "unknown", None), ("1950-01", "other", None), ("1949-06", None, None)],
)
def test_unknowable_demographics_are_not_measured(
    service_client, fhir_bundle, patient_coded, birth_date, gender, value
):
    # 1950 or 1950-01 at 2026-01-20: 75 or 76 depending on the day, so not measured;
    # 1949-06: 76 whatever the day.
    body = _with_demographics(
        fhir_bundle(), birth_date=birth_date, gender=gender, start="2026-01-20T00:00:00Z"
    )
    assert _post_to(service_client, body, PATIENT_CODED).status_code == 200
    prediction = Prediction.objects.get(model_version=patient_coded)
    assert prediction.features["age"]["value"] == (76 if birth_date == "1949-06" else None)
    assert prediction.features["sex_female"]["value"] is value


@pytest.mark.parametrize(
    ("birth_date", "gender", "field", "words"),
    [
        ("2026-03-05", "female", "birthDate", "birthDate 2026-03-05 is after 2026-03-04"),
        ("1950-03-05", "F", "gender", "gender 'F' is not an administrative-gender code"),
    ],
)
def test_invalid_patient_data_is_an_operation_outcome_naming_it(
    service_client, fhir_bundle, patient_coded, birth_date, gender, field, words
):
    body = _with_demographics(
        fhir_bundle(), birth_date=birth_date, gender=gender, start="2026-03-04T10:00:00Z"
    )
    response = _post_to(service_client, body, PATIENT_CODED)
    assert response.status_code == 400
    issue = OperationOutcome.model_validate(response.json()).issue[0]
    assert words in issue.diagnostics
    assert issue.expression == [f"Bundle.entry[0].resource.{field}"]
    assert Prediction.objects.count() == 0


def test_a_bundle_without_an_encounter_is_refused(service_client, fhir_bundle):
    """CONTRACT section 2: encounter_id is required, over FHIR as over REST."""
    body = fhir_bundle()
    body["entry"] = [e for e in body["entry"] if e["resource"]["resourceType"] != "Encounter"]
    response = _post(service_client, body)
    assert response.status_code == 400
    outcome = OperationOutcome.model_validate(response.json())
    assert outcome.issue[0].code == "required" and "needs an Encounter" in outcome.issue[0].diagnostics
    assert Prediction.objects.count() == 0
