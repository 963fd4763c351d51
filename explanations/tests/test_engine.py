"""The explanation engine through its public surface: the stored explanation and its API body,
the version profile, abstention, what-if, and the cohort aggregates and recompute job."""

import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.conf import settings

from engine import cohort
from engine import treeshap as core
from explanations import services
from explanations.models import (
    CohortAggregate,
    CohortChunkAggregate,
    CohortChunkSample,
    CohortJob,
    CohortJobChunk,
    CohortSample,
    Explanation,
    VersionProfile,
)
from explanations.services.profiles import version_profile_loaded
from models_registry.serving import serving_model
from patients.models import AuditEvent, Prediction

pytestmark = pytest.mark.django_db


def ingest(service_client, payload, capture) -> Prediction:
    with capture(execute=True):
        response = service_client.post("/api/v1/predictions/", payload, format="json")
    assert response.status_code == 201, response.content
    return Prediction.objects.get(pk=response.json()["id"])


def body_of(client, prediction) -> dict:
    response = client.get(f"/api/v1/predictions/{prediction.pk}/explanation/")
    assert response.status_code == 200, response.content
    return response.json()


def test_profile_is_built_once_and_its_reference_shap_is_content_addressed(model_version):
    first = services.version_profile_build(version=model_version)
    again = services.version_profile_build(version=model_version)

    assert first.status == again.status == VersionProfile.Status.READY
    assert VersionProfile.objects.filter(version=model_version).count() == 1
    assert again.reference_shap_sha256 == first.reference_shap_sha256
    path = Path(settings.MODEL_STORE) / first.reference_shap_sha256
    matrix = np.load(path, allow_pickle=False)
    assert matrix.shape == (model_version.reference_size, len(model_version.input_features()))
    params = first.params
    # Interval coverage measured on the half of the reference set the fit did not see.
    assert params["conformal"]["nominal"] == 0.9
    assert 0.85 <= params["conformal"]["coverage_check_half"] <= 0.97
    assert (
        params["calibration"]["fit_size"] + params["calibration"]["check_size"]
        == model_version.reference_size
    )
    assert len(params["key_features"]) == 5


def test_ready_explanation_stores_points_uncertainty_neighbours_and_stability(
    service_client, prediction_payload, model_version, charlie_client, django_capture_on_commit_callbacks
):
    prediction = ingest(service_client, prediction_payload(1), django_capture_on_commit_callbacks)

    body = body_of(charlie_client, prediction)

    assert body["status"] == "ready" and body["not_yet_computed"] == []
    assert body["units_by_field"]["features[].shap"] == "log-odds"
    points = sum(f["points"] for f in body["features"])
    assert points == pytest.approx(body["risk"] - float(core.sigmoid(body["base_value"])), abs=1e-6)

    unc = body["uncertainty"]
    assert unc["interval"]["low"] <= unc["interval"]["high"]
    low, high = unc["calibration"]["bin"]
    assert low <= body["risk"] < high or high == 1.0
    assert unc["calibration"]["ci"][0] <= unc["calibration"]["observed_rate"] <= unc["calibration"]["ci"][1]
    assert "reference patients scored" in unc["calibration"]["summary"]
    assert unc["ood"]["flag"] is False and body["abstain"] is False

    # Similar patients equal a brute-force search over the stored reference SHAP matrix.
    profile = version_profile_loaded(model_version)
    shap = np.array([f["shap"] for f in body["features"]])
    distances = np.sqrt(((profile.reference_shap - shap) ** 2).sum(axis=1))
    brute = np.argsort(distances, kind="stable")[:10]
    similar = body["similar_patients"]
    assert [n["reference_row"] for n in similar["neighbours"]] == brute.tolist()
    reference = serving_model(model_version).reference
    assert [n["outcome"] for n in similar["neighbours"]] == reference["died_30d"].iloc[brute].astype(
        bool
    ).tolist()
    assert similar["events"] == int(reference["died_30d"].iloc[brute].sum())
    assert similar["summary"].startswith(f"{similar['events']} of 10 similar patients")
    assert similar["neighbours"][0]["risk"] == pytest.approx(reference["expected_risk"].iloc[brute[0]])
    assert all("label" in f for n in similar["neighbours"] for f in n["shared_features"])

    stab = body["stability"]
    assert stab["perturbations"] == 20 and stab["top_k"] == 5
    assert 0 <= stab["agreement"] <= 1 and stab["unstable"] == (stab["agreement"] < stab["threshold"])


def test_model_abstains_when_key_inputs_are_not_measured(
    service_client, prediction_payload, model_version, charlie_client, django_capture_on_commit_callbacks
):
    key = services.version_profile_build(version=model_version).params["key_features"]
    payload = prediction_payload(2)
    for name in key[:3]:
        payload["features"][name] = None

    prediction = ingest(service_client, payload, django_capture_on_commit_callbacks)
    body = body_of(charlie_client, prediction)

    assert body["status"] == "ready"
    assert body["abstain"] is True
    assert "3 of the 5 most influential inputs are not measured" in body["abstain_reason"]
    assert body["uncertainty"]["key_features"]["not_measured"] == key[:3]
    # The SHAP values are still there (the UI shows the abstention instead of the risk).
    assert all(f["shap"] is not None for f in body["features"])


def test_model_abstains_far_out_of_distribution(
    service_client, prediction_payload, charlie_client, django_capture_on_commit_callbacks
):
    payload = prediction_payload(3)
    extreme = {"map": 290, "heart_rate": 290, "resp_rate": 115, "sodium": 195, "wbc": 240, "pf_ratio": 990}
    for name, value in extreme.items():
        payload["features"][name]["value"] = value

    body = body_of(charlie_client, ingest(service_client, payload, django_capture_on_commit_callbacks))

    assert body["uncertainty"]["ood"]["flag"] is True
    assert body["uncertainty"]["ood"]["reference_percentile"] > 99.0
    assert body["abstain"] is True and "not validated on patients like this" in body["abstain_reason"]


# --- what-if -----------------------------------------------------------------------------------


def what_if(client, prediction, changes):
    return client.post(
        f"/api/v1/predictions/{prediction.pk}/what-if/", {"changes": changes}, content_type="application/json"
    )


REFUSALS = [
    ({"age": 40}, "changes.age", "immutable_feature"),
    ({"rhc_day1": True}, "changes.rhc_day1", "invalid"),
    ({"lactate": 2.0}, "changes.lactate", "unknown_feature"),
    ({"map": 400}, "changes.map", "invalid"),
    ({"map": "high"}, "changes.map", "invalid"),
    ({"dnr_day1": True}, "changes.dnr_day1", "immutable_feature"),  # a care decision
    ({"apache_aps": 40}, "changes.apache_aps", "immutable_feature"),  # a composite score
    ({}, "changes", "invalid"),
]


def test_what_if_refuses_what_cannot_be_changed(
    service_client, prediction_payload, charlie_client, django_capture_on_commit_callbacks
):
    prediction = ingest(service_client, prediction_payload(4), django_capture_on_commit_callbacks)

    for changes, field, code in REFUSALS:
        response = what_if(charlie_client, prediction, changes)

        assert response.status_code == 400, (changes, response.content)
        assert response.json()["error"] == code, changes
        assert field in response.json()["fields"], changes
    assert AuditEvent.objects.filter(prediction=prediction, action="api_what_if").count() == 0


def test_what_if_recomputes_risk_tier_and_shap_synchronously(
    service_client,
    prediction_payload,
    model_version,
    alice_client,
    bob_client,
    django_capture_on_commit_callbacks,
):
    payload = prediction_payload(5)
    payload["patient"]["unit"] = "MICU"
    prediction = ingest(service_client, payload, django_capture_on_commit_callbacks)
    what_if(alice_client, prediction, {"map": 60})  # warm the explainer, as a worker process is

    started = time.perf_counter()
    response = what_if(alice_client, prediction, {"map": 45, "resp_rate": 30})
    seconds = time.perf_counter() - started

    assert response.status_code == 200, response.content
    body = response.json()
    serving = serving_model(model_version)
    values = {name: entry["value"] for name, entry in payload["features"].items()}
    expected = float(serving.predict_risk(serving.encode({**values, "map": 45, "resp_rate": 30})[None, :])[0])
    assert body["risk"] == pytest.approx(expected, abs=1e-9)
    assert body["tier"] == model_version.tier_for(expected)
    assert body["original"]["risk"] == pytest.approx(prediction.risk, abs=1e-9)
    assert body["delta"]["risk"] == pytest.approx(expected - prediction.risk, abs=1e-9)
    assert body["base_value"] + sum(f["shap"] for f in body["features"]) == pytest.approx(
        body["margin"], abs=1e-4
    )
    by_name = {f["name"]: f for f in body["features"]}
    assert by_name["map"]["changed"] and by_name["map"]["value"] == 45
    assert by_name["map"]["original_value"] == payload["features"]["map"]["value"]
    assert body["changes"]["map"] == {"from": payload["features"]["map"]["value"], "to": 45}
    assert seconds < 1.0
    assert AuditEvent.objects.filter(prediction=prediction, action="api_what_if").count() == 2
    assert what_if(bob_client, prediction, {"map": 45}).status_code == 404  # another unit


# --- cohort ------------------------------------------------------------------------------------


def _expected_from_stored(version) -> pd.DataFrame:
    """Direct pandas computation over the stored ready explanations."""
    records = []
    for explanation in Explanation.objects.filter(
        prediction__model_version=version, status=Explanation.Status.READY
    ).select_related("prediction"):
        shift, day = cohort.slice_of(explanation.prediction.scored_at, settings.HOSPITAL_TIME_ZONE)
        for c in explanation.contributions:
            records.append(
                {
                    "feature": c["name"],
                    "unit": explanation.prediction.unit,
                    "shift": shift,
                    "day": day,
                    "v": c["shap"],
                }
            )
    frame = pd.DataFrame(records)
    return frame.groupby(["feature", "unit", "shift", "day"]).agg(
        count=("v", "size"), total=("v", "sum"), total_abs=("v", lambda v: v.abs().sum())
    )


def _stored_aggregates(version) -> pd.DataFrame:
    rows = CohortAggregate.objects.filter(version=version).values(
        "feature", "unit", "shift", "day", "count", "total", "total_abs"
    )
    return pd.DataFrame(list(rows)).set_index(["feature", "unit", "shift", "day"]).sort_index()


@pytest.fixture
def explained_cohort(
    service_client, prediction_payload, model_version, django_capture_on_commit_callbacks, settings
):
    settings.HOSPITAL_TIME_ZONE = "America/New_York"
    settings.COHORT_SAMPLE_SIZE = 3
    for i in range(12):
        payload = prediction_payload(10 + i)
        payload["patient"]["unit"] = ["MICU", "CCU"][i % 2]
        ingest(service_client, payload, django_capture_on_commit_callbacks)
    return model_version


def test_cohort_aggregates_equal_a_pandas_computation_on_the_same_rows(explained_cohort, charlie_client):
    version = explained_cohort
    expected = _expected_from_stored(version).sort_index()
    stored = _stored_aggregates(version)

    assert list(stored.index) == list(expected.index)
    assert stored["count"].tolist() == expected["count"].tolist()
    np.testing.assert_allclose(stored["total"], expected["total"], atol=1e-9)
    np.testing.assert_allclose(stored["total_abs"], expected["total_abs"], atol=1e-9)
    # Bounded sample: at most COHORT_SAMPLE_SIZE per (unit, shift, day), the smallest priorities.
    per_slice = pd.DataFrame(
        list(CohortSample.objects.filter(version=version).values("unit", "shift", "day"))
    )
    assert per_slice.groupby(["unit", "shift", "day"]).size().max() <= 3

    body = charlie_client.get(f"/api/v1/cohort/?model={version.registered_model.name}&unit=MICU").json()
    micu = expected.xs("MICU", level="unit").groupby("feature").sum()
    top = body["features"][0]
    assert top["count"] == micu.loc[top["name"], "count"] == 6
    assert top["mean_abs_shap"] == pytest.approx(micu.loc[top["name"], "total_abs"] / 6)
    assert top["mean_abs_shap"] == max(micu["total_abs"] / 6)
    assert set(body["sample"]["unit"]) == {"MICU"}
    assert len(body["sample"]["shap"][0]) == len(body["sample"]["feature_names"])


def test_cohort_api_shows_a_clinician_only_their_units(explained_cohort, bob_client):
    name = explained_cohort.registered_model.name
    body = bob_client.get(f"/api/v1/cohort/?model={name}").json()  # bob: CCU
    assert set(body["sample"]["unit"]) == {"CCU"}
    assert bob_client.get(f"/api/v1/cohort/?model={name}&unit=MICU").json()["explanations"] == 0
    bad = bob_client.get(f"/api/v1/cohort/?model={name}&shift=evening")
    assert bad.status_code == 400 and "shift" in bad.json()["fields"]


def test_recompute_job_reproduces_the_aggregates_and_rerunning_a_chunk_adds_nothing(
    explained_cohort, charlie_client
):
    version = explained_cohort
    expected = _stored_aggregates(version)
    samples = set(CohortSample.objects.filter(version=version).values_list("prediction_id", flat=True))

    job = services.cohort_job_create(version=version, chunk_size=5)
    assert (job.chunks_total, job.rows_total) == (3, 12)
    services.cohort_job_run(job=job)  # eager: the chunk tasks run here

    job.refresh_from_db()
    assert job.status == CohortJob.Status.DONE
    after = _stored_aggregates(version)
    assert after["count"].tolist() == expected["count"].tolist()
    np.testing.assert_allclose(after["total"], expected["total"], atol=1e-6)
    np.testing.assert_allclose(after["total_abs"], expected["total_abs"], atol=1e-6)
    assert (
        set(CohortSample.objects.filter(version=version).values_list("prediction_id", flat=True)) == samples
    )

    # A chunk delivered again (a redelivered message) replaces its own partials: no double count.
    chunk = CohortJobChunk.objects.get(job=job, index=0)
    partial_rows = CohortChunkAggregate.objects.filter(chunk=chunk).count()
    CohortJobChunk.objects.filter(pk=chunk.pk).update(status=CohortJobChunk.Status.RUNNING)
    services.cohort_chunk_compute(chunk_id=chunk.pk)
    assert CohortChunkAggregate.objects.filter(chunk=chunk).count() == partial_rows
    assert sum(CohortChunkAggregate.objects.filter(chunk=chunk).values_list("count", flat=True)) == 5 * len(
        version.input_features()
    )

    progress = charlie_client.get(f"/api/v1/jobs/{job.pk}/").json()
    assert progress["status"] == "done" and progress["chunks_done"] == progress["chunks_total"] == 3
    assert progress["rows_done"] == 12 and progress["progress"] == 1.0
    assert charlie_client.get("/api/v1/jobs/999999/").status_code == 404


def test_a_recompute_job_cuts_the_versions_ids_into_chunks_in_the_database():
    from tests.fixtures.factories import model_version_create, prediction_create

    version, other = model_version_create(name="chunked"), model_version_create(name="interleaved")
    for i in range(20):
        prediction_create(model_version=version, explanation=None)
        gap = 3 if i == 4 else 1 if i % 3 == 0 else 0  # gaps in the version's ids, one of 3
        for _ in range(gap):
            prediction_create(model_version=other, explanation=None)
    ids = list(Prediction.objects.filter(model_version=version).order_by("pk").values_list("pk", flat=True))

    job = services.cohort_job_create(version=version, chunk_size=6)

    chunks = list(
        CohortJobChunk.objects.filter(job=job).order_by("index").values_list("index", "first_id", "last_id")
    )
    assert chunks == [(i, ids[6 * i], ids[min(6 * i + 5, len(ids) - 1)]) for i in range(4)]
    assert (job.chunks_total, job.rows_total, job.max_prediction_id) == (4, 20, ids[-1])
    # Each of the version's predictions falls in exactly one chunk.
    covered = [sum(first <= pk <= last for _, first, last in chunks) for pk in ids]
    assert covered == [1] * len(ids)

    empty = services.cohort_job_create(version=model_version_create(name="unscored"), chunk_size=6)
    assert (empty.chunks_total, empty.rows_total, empty.max_prediction_id) == (0, 0, 0)


def test_a_recompute_job_keeps_the_bottom_k_of_every_slice_when_chunks_prune(explained_cohort, settings):
    settings.COHORT_SAMPLE_SIZE = 1  # with chunks of 2, later chunks drop rows earlier ones outrank
    version = explained_cohort
    job = services.cohort_job_create(version=version, chunk_size=2)
    services.cohort_job_run(job=job)

    rows = pd.DataFrame(
        [
            (p.unit, *cohort.slice_of(p.scored_at, settings.HOSPITAL_TIME_ZONE), p.pk, cohort.priority(p.pk))
            for p in Prediction.objects.filter(model_version=version)
        ],
        columns=["unit", "shift", "day", "prediction_id", "priority"],
    )
    expected = set(cohort.bottom_k(rows, 1)["prediction_id"])
    assert (
        set(CohortSample.objects.filter(version=version).values_list("prediction_id", flat=True)) == expected
    )
    stored = CohortChunkSample.objects.filter(chunk__job=job).count()
    assert len(expected) <= stored <= job.chunks_total * len(expected)


def test_a_chunk_stores_no_sample_row_that_other_chunks_already_outrank(model_version, settings):
    from explanations.services.cohort_job import _sample_prune

    settings.COHORT_SAMPLE_SIZE = 2
    job = CohortJob.objects.create(version=model_version, chunk_size=10)
    done, this = (
        CohortJobChunk.objects.create(job=job, index=i, first_id=10 * i, last_id=10 * i + 9) for i in range(2)
    )
    a, b = ("MICU", "day", date(2026, 1, 5)), ("CCU", "night", date(2026, 1, 5))
    held = [(done, a, 1, 0.1), (done, a, 2, 0.3), (done, b, 3, 0.2), (this, a, 4, 0.01), (this, a, 5, 0.02)]
    CohortChunkSample.objects.bulk_create(
        CohortChunkSample(
            chunk=chunk, unit=unit, shift=shift, day=day, prediction_id=pk, priority=p, values=[], shap=[]
        )
        for chunk, (unit, shift, day), pk, p in held
    )
    candidates = pd.DataFrame(
        [(*a, 11, 0.05), (*a, 12, 0.3), (*a, 13, 0.35), (*b, 14, 0.9)],
        columns=["unit", "shift", "day", "prediction_id", "priority"],
    )

    kept = _sample_prune(candidates, job_id=job.pk, chunk_id=this.pk)

    # Slice a: two rows of another chunk at or below 0.3 outrank 0.35 only (this chunk's own earlier
    # rows do not count: a re-run replaces them). Slice b: fewer than 2 rows elsewhere, nothing dropped.
    assert kept["prediction_id"].tolist() == [11, 12, 14]


def test_explanations_after_a_job_are_added_once(
    explained_cohort, service_client, prediction_payload, django_capture_on_commit_callbacks
):
    version = explained_cohort
    job = services.cohort_job_create(version=version, chunk_size=100)
    services.cohort_job_run(job=job)
    payload = prediction_payload(40)
    ingest(service_client, payload, django_capture_on_commit_callbacks)

    expected = _expected_from_stored(version).sort_index()
    stored = _stored_aggregates(version)
    assert stored["count"].tolist() == expected["count"].tolist()
    np.testing.assert_allclose(stored["total"], expected["total"], atol=1e-6)


def test_recompute_cohort_command_runs_the_job_and_reports_progress(explained_cohort):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command(
        "recompute_cohort", "--model", "icu-mortality-30d", "--chunk-size", "5", "--wait", stdout=out
    )

    job = CohortJob.objects.get()
    assert job.status == CohortJob.Status.DONE and job.chunks_total == 3
    assert f"cohort job {job.pk}: 12 predictions" in out.getvalue()
    assert "done: 3/3 chunks, 12 rows" in out.getvalue()
    out = StringIO()
    call_command("recompute_cohort", "--resume", str(job.pk), stdout=out)
    assert "0 chunk(s) dispatched" in out.getvalue()


def test_the_cohort_api_audits_which_patients_its_sample_showed(explained_cohort, bob, bob_client):
    """Issue 15, finding 4: per-prediction values and SHAP were returned with no audit record."""
    from patients.models import AuditEvent, Prediction

    name = explained_cohort.registered_model.name
    body = bob_client.get(f"/api/v1/cohort/?model={name}").json()

    event = AuditEvent.objects.get(action="api_cohort")
    shown = Prediction.objects.filter(pk__in=body["sample"]["prediction_ids"])
    assert body["sample"]["n"] > 0
    assert event.user == bob and event.rows == body["sample"]["n"]
    assert event.patients == sorted(set(shown.values_list("patient__external_id", flat=True)))
    assert f"sample {body['sample']['n']} of {body['explanations']} explanations" in event.path
    assert f"model={name}" in event.path
