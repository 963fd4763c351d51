"""Periodic upkeep of the EHR tables (scheduled in settings.CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from .ehr_registry import jti_prune


@shared_task(soft_time_limit=60, time_limit=90)
def seen_jti_prune() -> int:
    """Delete the seen CDS Hooks token ids whose tokens expired: they can no longer be replayed."""
    return jti_prune()
