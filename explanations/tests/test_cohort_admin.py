"""The cohort recompute as an admin action, and the job's progress page."""

from datetime import timedelta

import pytest
import yaml
from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.messages import get_messages
from django.utils import timezone

from explanations import services
from explanations.models import CohortAggregate, CohortJob, CohortJobChunk
from explanations.services import cohort_job_create
from patients.models import Prediction

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
    assert "explanations/job.js" in text

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


def test_the_job_api_answers_every_role_as_the_job_page_does(
    scored, alice_client, auditor_client, charlie_client, service_client
):
    """One rule (accounts.permissions.may_run_cohort_jobs) for the page and the API: a clinician or
    an auditor reading /api/v1/jobs/<id>/ was answered 200 while the page answered them 403."""
    job = cohort_job_create(version=scored, chunk_size=3)
    answers = {
        who: (c.get(f"/jobs/{job.pk}/").status_code, c.get(f"/api/v1/jobs/{job.pk}/").status_code)
        for who, c in {"alice": alice_client, "auditor": auditor_client, "charlie": charlie_client}.items()
    }

    assert answers == {"alice": (403, 403), "auditor": (403, 403), "charlie": (200, 200)}
    assert service_client.get(f"/api/v1/jobs/{job.pk}/").status_code == 403


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


# --- a chunk that fails, and a job that stalls ------------------------------------------------


def _counted(version) -> int:
    """Predictions counted in the version's cohort aggregates (those of its first feature)."""
    from models_registry.serving import serving_model

    first = serving_model(version).feature_names[0]
    return sum(CohortAggregate.objects.filter(version=version, feature=first).values_list("count", flat=True))


def _explain_failing_once(monkeypatch, error: BaseException):
    """The first SHAP call of the job raises `error`; the later ones compute as usual."""
    from engine import treeshap as core

    real = core.explain
    calls = []

    def explain(explainer, matrix):
        calls.append(len(matrix))
        if len(calls) == 1:
            raise error
        return real(explainer, matrix)

    monkeypatch.setattr(core, "explain", explain)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ValueError("bad background"), "Unexpected error: ValueError: bad background."),
        (SoftTimeLimitExceeded(), "The chunk took longer than the task time limit."),
    ],
)
def test_a_failed_chunk_fails_the_job_with_its_reason_and_resume_finishes_it(
    scored, admin_client, monkeypatch, error, reason
):
    _explain_failing_once(monkeypatch, error)
    response = admin_client.post(CHANGELIST, {"action": ACTION, "_selected_action": [scored.pk]})
    assert response.status_code == 302

    job = CohortJob.objects.get()
    chunks = {c.index: c for c in CohortJobChunk.objects.filter(job=job)}
    # The other chunks went on; the failed one is marked, with the reason, and so is the job.
    assert [chunks[i].status for i in range(3)] == ["failed", "done", "done"]
    assert chunks[0].error == reason
    assert job.status == "failed"
    assert job.error == f"Chunk 1 of 3 (predictions {chunks[0].first_id} to {chunks[0].last_id}) failed: " + (
        f"{reason} Resume the job to run the chunks not done."
    )
    page = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'<form method="post" action="/jobs/{job.pk}/resume/" id="job-resume">' in page
    assert "Resume the job to run the chunks not done." in page

    resumed = admin_client.post(f"/jobs/{job.pk}/resume/")

    assert resumed.status_code == 302 and resumed["Location"] == f"/jobs/{job.pk}/"
    job.refresh_from_db()
    assert (job.status, job.error) == ("done", "")
    assert list(
        CohortJobChunk.objects.filter(job=job).order_by("index").values_list("attempts", flat=True)
    ) == [
        2,
        1,
        1,
    ]
    assert _counted(scored) == 7
    page = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "1 chunk(s) not done dispatched again." in page
    assert 'id="job-resume" hidden' in page


def test_only_a_failed_job_is_resumed_and_only_by_an_admin(scored, charlie_client, alice_client):
    job = cohort_job_create(version=scored, chunk_size=3)
    CohortJob.objects.filter(pk=job.pk).update(status="running")

    assert alice_client.post(f"/jobs/{job.pk}/resume/").status_code == 403
    response = charlie_client.post(f"/jobs/{job.pk}/resume/", follow=True)

    assert "Only a failed job is resumed; this one is running." in response.content.decode()
    assert CohortJobChunk.objects.filter(job=job, status="pending").count() == 3
    assert charlie_client.get(f"/jobs/{job.pk}/resume/").status_code == 405


def test_the_sweep_redispatches_a_job_whose_messages_were_lost(scored, settings):
    """A running job in which nothing happened for COHORT_STALL_SECONDS: its chunk marked running
    (the worker died) goes back to pending and every chunk not done is sent again."""
    from explanations.tasks import explanation_sweep

    settings.COHORT_STALL_SECONDS = 600
    now = timezone.now()
    stalled = cohort_job_create(version=scored, chunk_size=3)
    CohortJob.objects.filter(pk=stalled.pk).update(
        status="running", started_at=now - timedelta(minutes=30), dispatched_at=now - timedelta(minutes=30)
    )
    CohortJobChunk.objects.filter(job=stalled, index=0).update(
        status="running", started_at=now - timedelta(minutes=25)
    )
    busy = cohort_job_create(version=scored, chunk_size=3)
    CohortJob.objects.filter(pk=busy.pk).update(status="running", dispatched_at=now - timedelta(minutes=30))
    # A chunk of this job started a minute ago: it is working, not stalled.
    CohortJobChunk.objects.filter(job=busy, index=0).update(
        status="running", started_at=now - timedelta(minutes=1)
    )

    explanation_sweep.delay()  # eager in tests: the re-dispatched chunks run here

    stalled.refresh_from_db()
    assert stalled.status == "done"
    assert CohortJobChunk.objects.filter(job=stalled, status="done").count() == 3
    assert _counted(scored) == 7
    busy.refresh_from_db()
    assert busy.status == "running" and busy.dispatched_at == now - timedelta(minutes=30)
    assert list(
        CohortJobChunk.objects.filter(job=busy).order_by("index").values_list("status", flat=True)
    ) == [
        "running",
        "pending",
        "pending",
    ]


def test_the_sweep_finalises_a_job_whose_finalisation_died(scored, settings):
    """Every chunk done but the job left finalizing (the worker died inside the finalisation,
    whose transaction rolled back): the sweep finalises it again."""
    from explanations.tasks import explanation_sweep

    settings.COHORT_STALL_SECONDS = 600
    job = cohort_job_create(version=scored, chunk_size=3)
    services.cohort_job_run(job=job)  # eager: done
    assert _counted(scored) == 7
    CohortAggregate.objects.filter(version=scored).delete()  # as if the finalisation rolled back
    old = timezone.now() - timedelta(minutes=20)
    CohortJob.objects.filter(pk=job.pk).update(status="finalizing", dispatched_at=old, finished_at=None)
    CohortJobChunk.objects.filter(job=job).update(started_at=old, finished_at=old)

    explanation_sweep.delay()

    job.refresh_from_db()
    assert job.status == "done" and job.finished_at is not None
    assert _counted(scored) == 7


def test_the_model_card_takes_an_admin_to_upload_and_to_the_recompute(scored, admin_client, alice_client):
    """The card's own buttons: "Upload a new version" opens the admin's upload form, and "Recompute
    cohort SHAP" posts the admin action for this version (the job page follows)."""
    card = f"/models/{scored.registered_model.name}/versions/{scored.version}/"
    html = admin_client.get(card).content.decode()
    assert 'href="/admin/models_registry/registeredmodel/upload/" id="card-upload"' in html
    assert f'name="_selected_action" value="{scored.pk}"' in html and 'value="recompute_cohort"' in html
    assert admin_client.get("/admin/models_registry/registeredmodel/upload/").status_code == 200
    response = admin_client.post(CHANGELIST, {"action": ACTION, "_selected_action": [scored.pk], "index": 0})
    job = CohortJob.objects.get()
    assert (response.status_code, response["Location"], job.version) == (302, f"/jobs/{job.pk}/", scored)
    # A clinician reads the card but is offered neither.
    html = alice_client.get(card).content.decode()
    assert 'id="card-admin"' not in html and "Recompute cohort SHAP" not in html
