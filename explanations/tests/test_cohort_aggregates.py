"""The cohort aggregates through their public surface: the stored aggregates against a pandas
computation, the cohort API, and the recompute job (its chunks, sample and command)."""

from datetime import date

import numpy as np
import pandas as pd
import pytest
from django.conf import settings

from engine import cohort
from explanations import services
from explanations.models import (
    CohortAggregate,
    CohortChunkAggregate,
    CohortChunkSample,
    CohortJob,
    CohortJobChunk,
    CohortSample,
    Explanation,
)
from explanations.tests.helpers import ingest
from patients.models import Prediction

pytestmark = pytest.mark.django_db


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
    from explanations.services.cohort_job import _sample_kept

    settings.COHORT_SAMPLE_SIZE = 2
    job = CohortJob.objects.create(version=model_version, chunk_size=10)
    done, this, later = (
        CohortJobChunk.objects.create(job=job, index=i, first_id=10 * i, last_id=10 * i + 9) for i in range(3)
    )
    CohortJobChunk.objects.filter(pk=done.pk).update(status=CohortJobChunk.Status.DONE)
    a, b = ("MICU", "day", date(2026, 1, 5)), ("CCU", "night", date(2026, 1, 5))
    held = [(done, a, 1, 0.1), (done, a, 2, 0.3), (done, b, 3, 0.2), (this, a, 4, 0.01), (this, a, 5, 0.02)]
    held += [(later, b, 6, 0.05)]  # stored by a chunk that is not done (a run that failed): not counted
    CohortChunkSample.objects.bulk_create(
        CohortChunkSample(
            chunk=chunk, unit=unit, shift=shift, day=day, prediction_id=pk, priority=p, values=[], shap=[]
        )
        for chunk, (unit, shift, day), pk, p in held
    )
    # Candidates 11, 12, 13 in slice a (slice 0), 14 in slice b (slice 1).
    kept = _sample_kept(np.array([0, 0, 0, 1]), np.array([0.05, 0.3, 0.35, 0.9]), [a, b], chunk=this)

    # Slice a: two rows of another chunk at or below 0.3 outrank 0.35 only (this chunk's own earlier
    # rows do not count: a re-run replaces them). Slice b: fewer than 2 rows elsewhere, nothing dropped.
    assert kept.tolist() == [True, True, False, True]

    # Chunks done since are read too (a worker process keeps what it read of the job's chunks).
    CohortJobChunk.objects.filter(pk=later.pk).update(status=CohortJobChunk.Status.DONE)
    kept = _sample_kept(np.array([1, 1]), np.array([0.1, 0.25]), [a, b], chunk=this)
    assert kept.tolist() == [True, False]


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


def test_aggregate_rows_beyond_a_statements_parameter_cap_are_added_in_several_statements(
    db, model_version, monkeypatch
):
    """SQLite caps a statement's parameters (999 before 3.32): 300 aggregate rows (2,400 parameters)
    go in several statements, each row added once, whatever the cap (forced to 80 here)."""
    from django.db import connection

    from explanations.models import CohortAggregate
    from explanations.services.cohort import _aggregates_add

    rows = [
        (f"f{i % 25:02d}", f"U{i // 25}", "day", date(2026, 3, 1), 2, 0.5 * i, 1.0 * i) for i in range(300)
    ]
    monkeypatch.setattr(connection.features, "max_query_params", 80)  # 10 rows a statement
    _aggregates_add(model_version.pk, rows)
    _aggregates_add(model_version.pk, rows[:10])  # added to, never replaced
    stored = CohortAggregate.objects.filter(version=model_version)
    assert stored.count() == 300
    first = stored.get(feature="f00", unit="U0")
    assert (first.count, first.total) == (4, 0.0)
    assert sum(stored.values_list("count", flat=True)) == 620
