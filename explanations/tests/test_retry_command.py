"""manage.py retry_explanations: failed explanations back to pending and queued once their cause is
fixed, chosen by their error, day and model; a dry run changes nothing."""

import pytest
from django.core.management import CommandError, call_command

from explanations.models import Explanation
from explanations.tasks import explanation_compute_batch_task
from explanations.tests.test_explanation_batch import _explanation_ids, _ingest_pending

pytestmark = pytest.mark.django_db

INFINITY = 'Unexpected error: DataError: invalid input syntax for type json: Token "Infinity" is invalid.'


def test_failed_explanations_chosen_by_their_error_are_retried_and_explained(
    worker_queue, service_client, prediction_payload, model_version, capsys
):
    ids = _explanation_ids(_ingest_pending(service_client, prediction_payload, 3, "retry"))
    failed = Explanation.Status.FAILED
    Explanation.objects.filter(pk__in=ids[:2]).update(status=failed, error=INFINITY, attempts=5)
    Explanation.objects.filter(pk=ids[2]).update(status=failed, error="artifact changed")

    call_command("retry_explanations", "--error-contains", "infinity", "--dry-run")
    assert "2 failed explanation(s) would be retried" in capsys.readouterr().out
    assert Explanation.objects.filter(status=Explanation.Status.FAILED).count() == 3

    name = model_version.registered_model.name
    call_command("retry_explanations", "--error-contains", "infinity", "--model", name)
    out = capsys.readouterr().out
    assert "2 failed explanation(s) back to pending, 2 queued" in out
    assert "1 failed explanation(s) left" in out
    retried = Explanation.objects.filter(pk__in=ids[:2])
    assert {(e.status, e.attempts, e.error) for e in retried} == {(Explanation.Status.PENDING, 0, "")}
    assert Explanation.objects.get(pk=ids[2]).error == "artifact changed"  # not chosen: untouched
    assert explanation_compute_batch_task.run(ids[:2]) == ["ready", "ready"]


def test_a_bad_day_or_model_is_refused_naming_it():
    with pytest.raises(CommandError, match="--since '2026-13-01' is not a day"):
        call_command("retry_explanations", "--since", "2026-13-01")
    with pytest.raises(CommandError, match="No such model version: nosuch"):
        call_command("retry_explanations", "--model", "nosuch")
