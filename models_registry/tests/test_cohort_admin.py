"""The cohort recompute as an admin action, and the job's progress page."""

import pytest
import yaml
from django.contrib.messages import get_messages

from explanations.models import CohortJob, CohortJobChunk, Prediction
from explanations.services import cohort_job_create

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/models_registry/modelversion/"
ACTION = "recompute_cohort"


@pytest.fixture
def scored(service_client, prediction_payload, model_version, settings):
    """Seven predictions of the production version (their explanations are not needed: the job
    explains the rows itself), cut into chunks of three."""
    settings.COHORT_CHUNK_SIZE = 3
    for i in range(7):
        response = service_client.post("/api/v1/predictions/", prediction_payload(i), format="json")
        assert response.status_code == 201, response.content
    assert Prediction.objects.filter(model_version=model_version).count() == 7
    return model_version


def test_admin_action_creates_runs_and_shows_the_job(scored, admin_client):
    response = admin_client.post(CHANGELIST, {"action": ACTION, "_selected_action": [scored.pk]})

    job = CohortJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/{job.pk}/"
    # Eager in tests: the three chunk tasks ran inside the action and the job was finalised.
    assert (job.version, job.status, job.chunks_total, job.rows_total) == (scored, "done", 3, 7)
    chunks = CohortJobChunk.objects.filter(job=job)
    assert chunks.filter(status="done").count() == job.chunks_total == 3
    assert sorted(chunks.values_list("rows", flat=True)) == [1, 3, 3]
    assert job.started_at is not None and job.finished_at is not None

    page = admin_client.get(response["Location"])
    assert page.status_code == 200
    text = page.content.decode()
    assert f"Cohort job {job.pk} for {scored}: 7 predictions in 3 chunk(s), 3 dispatched." in text
    assert '<span class="tag" id="job-status">done</span>' in text
    assert '<progress id="job-progress" max="3" value="3"' in text
    assert "3 of 3 chunks, 7 of 7 rows" in text
    assert f'data-url="/api/v1/jobs/{job.pk}/"' in text and "data-ended" in text
    assert "models_registry/job.js" in text

    api = admin_client.get(f"/api/v1/jobs/{job.pk}/").json()
    assert (api["status"], api["chunks_done"], api["chunks_total"], api["rows_done"]) == ("done", 3, 3, 7)


def test_admin_action_asks_for_one_version(scored, admin_client, bad_bundle):
    from models_registry.services import model_register

    path = bad_bundle()
    spec = yaml.safe_load((path / "bundle.yaml").read_text())
    spec["promotion"] = {"auroc_margin": 0.0}
    (path / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    second, _ = model_register(path=path)
    assert second.pk != scored.pk

    response = admin_client.post(CHANGELIST, {"action": ACTION, "_selected_action": [scored.pk, second.pk]})

    assert response.status_code == 302 and response["Location"] == CHANGELIST
    assert [m.message for m in get_messages(response.wsgi_request)] == [
        "Select exactly one version to recompute its cohort SHAP."
    ]
    assert CohortJob.objects.count() == 0


def test_page_shows_a_running_job_from_the_database(scored, charlie_client):
    job = cohort_job_create(version=scored, chunk_size=3)
    first = CohortJobChunk.objects.get(job=job, index=0)
    CohortJobChunk.objects.filter(pk=first.pk).update(status="done", rows=3)
    CohortJob.objects.filter(pk=job.pk).update(status="running")

    text = charlie_client.get(f"/jobs/{job.pk}/").content.decode()

    assert f"{scored.registered_model.name} v{scored.version}" in text
    assert '<span class="tag" id="job-status">running</span>' in text
    assert '<progress id="job-progress" max="3" value="1"' in text
    assert "1 of 3 chunks, 3 of 7 rows" in text
    assert "not finished" in text
    assert "data-ended" not in text  # the script keeps polling


def test_counts_are_written_with_thousands_separators(scored, charlie_client):
    job = cohort_job_create(version=scored, chunk_size=3)
    CohortJob.objects.filter(pk=job.pk).update(
        chunks_total=35, rows_total=34571, status="failed", error="boom"
    )
    CohortJobChunk.objects.filter(job=job, index=0).update(status="done", rows=12000)

    text = charlie_client.get(f"/jobs/{job.pk}/").content.decode()

    assert "1 of 35 chunks, 12,000 of 34,571 rows" in text
    assert '<span id="job-error-text">boom</span>' in text and "data-ended" in text


def test_only_admins_see_the_job_page(scored, alice_client, auditor_client, client):
    job = cohort_job_create(version=scored, chunk_size=3)
    url = f"/jobs/{job.pk}/"

    assert alice_client.get(url).status_code == 403
    assert auditor_client.get(url).status_code == 403
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/?next=")


def test_missing_job_is_404(db, charlie_client):
    assert charlie_client.get("/jobs/999999/").status_code == 404


def test_a_staff_member_who_is_not_an_admin_cannot_start_a_job(scored, alice, client):
    from django.contrib.auth.models import Permission

    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    alice.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_modelversion", "change_modelversion"])
    )
    client.force_login(alice)

    response = client.post(CHANGELIST, {"action": ACTION, "_selected_action": [scored.pk]})

    assert response.status_code == 302
    assert [m.message for m in get_messages(response.wsgi_request)] == [
        "Only an admin may recompute cohort SHAP."
    ]
    assert CohortJob.objects.count() == 0
