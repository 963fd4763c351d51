"""Celery tasks: thin wrappers that take ids and call services."""

import logging

from celery import current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError
from kombu.exceptions import ChannelError
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from models_registry.models import ModelVersion
from sightline.queues import now_queue

from . import services
from .models import Explanation
from .services.cohort_job import cohort_chunk_compute, cohort_chunk_fail, cohort_jobs_stalled_resume
from .services.profiles import version_profile_build, versions_without_profile

log = logging.getLogger(__name__)

# A database restart or a broker blip: try again later rather than fail the explanation.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, BrokerError)


def _compute(explanation_id: int) -> str:
    try:
        return services.explanation_compute(explanation_id=explanation_id).status
    except TRANSIENT_ERRORS:
        raise
    except Explanation.DoesNotExist:
        log.warning("explanation %s does not exist; nothing to do", explanation_id)
        return "missing"
    except SoftTimeLimitExceeded:
        services.explanation_fail(
            explanation_id=explanation_id, reason="The explanation took longer than the task time limit."
        )
        raise
    except Exception as exc:
        # A programming error is not retried forever: it is shown as a failed explanation
        # with its reason, and logged with the traceback.
        log.exception("explanation %s failed unexpectedly", explanation_id)
        services.explanation_fail(
            explanation_id=explanation_id, reason=f"Unexpected error: {type(exc).__name__}: {exc}"
        )
        return Explanation.Status.FAILED


def _lone_messages_waiting() -> int:
    """Lone predictions' messages waiting in their queue (0 when tasks run in-process or the broker
    does not answer: the lone prediction is then explained alone, and the rest by their messages)."""
    app = current_app
    if app.conf.task_always_eager:
        return 0
    try:
        with app.connection_or_acquire() as connection:  # pooled
            declared = connection.default_channel.queue_declare(
                queue=now_queue(app.conf.task_default_queue), passive=True
            )
    except ChannelError:
        return 0  # the queue has no message at all
    except (BrokerError, RedisError, OSError) as exc:
        log.warning("lone queue length unknown: %s", exc)
        return 0
    return declared.message_count


RETRY = {
    "acks_late": True,
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 6,
}


@shared_task(**RETRY)
def explanation_compute_task(explanation_id: int) -> str:
    """Compute one prediction's explanation; returns the explanation's status.

    Its own prediction is explained first, alone, on the low-latency path (this message sits in the
    queue workers read first). When many are pending (a burst of single posts), the task then takes
    a batch of them; their own messages find them done.
    """
    try:
        status = _compute(explanation_id)
    except SoftTimeLimitExceeded:
        return Explanation.Status.FAILED
    backlog = services.explanations_backlog(explanation_id, waiting=_lone_messages_waiting())
    if len(backlog) > 1:
        _compute_batch(backlog[1:])
    return status


def _compute_batch(explanation_ids: list[int]) -> dict[int, str]:
    try:
        alone = services.explanations_compute_batch(explanation_ids)
    except SoftTimeLimitExceeded:
        alone = []  # handed back to pending: the sweep queues them again
    for explanation_id in alone:
        try:
            _compute(explanation_id)
        except SoftTimeLimitExceeded:
            break  # this one is marked failed; the rest of the batch waits for the sweep
    return dict(Explanation.objects.filter(pk__in=explanation_ids).values_list("pk", "status"))


@shared_task(**RETRY)
def explanation_compute_batch_task(explanation_ids: list[int]) -> list[str]:
    """Compute several explanations (queued together by bulk ingest or the sweep) in one engine
    call and one transaction; the ones the batch could not take are then computed alone. Returns
    their statuses in order. A retry after a transient error redoes only the ones still pending."""
    statuses = _compute_batch(list(explanation_ids))
    return [statuses.get(pk, "missing") for pk in explanation_ids]


@shared_task(acks_late=True)
def explanation_sweep() -> int:
    """Re-queue explanations left pending or running by a lost message or a dead worker, and
    re-dispatch cohort jobs that stalled for the same reasons."""
    ids = services.explanations_stuck_requeue()
    if ids:
        log.info("sweep re-queues %d explanation(s)", len(ids))
        services.explanations_enqueue(ids)
    cohort_jobs_stalled_resume()
    for version_id in versions_without_profile():
        version_profile_build_task.delay(version_id)
    return len(ids)


@shared_task(**RETRY)
def cohort_chunk_task(chunk_id: int) -> int:
    """Recompute one chunk of a cohort job; returns the rows it explained. Safe to run twice.

    A chunk that runs past the task time limit or raises an unexpected error is marked failed,
    and so is its job, with the reason (shown on the job's page); resuming the job re-runs it.
    """
    try:
        return cohort_chunk_compute(chunk_id=chunk_id).rows
    except TRANSIENT_ERRORS:
        raise
    except SoftTimeLimitExceeded:
        cohort_chunk_fail(chunk_id=chunk_id, reason="The chunk took longer than the task time limit.")
        return 0
    except Exception as exc:
        log.exception("cohort chunk %s failed unexpectedly", chunk_id)
        cohort_chunk_fail(chunk_id=chunk_id, reason=f"Unexpected error: {type(exc).__name__}: {exc}.")
        return 0


@shared_task(acks_late=True)
def version_profile_build_task(version_id: int) -> str:
    """Build a model version's explanation profile (e.g. queued at registration)."""
    return version_profile_build(version=ModelVersion.objects.get(pk=version_id)).status
