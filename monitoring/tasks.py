"""Celery tasks: thin wrappers around monitoring.services."""

import logging

from celery import shared_task
from django.core.cache import cache

from explanations.tasks import RETRY

from . import services
from .refresh import defaults_refresh
from .subgroups import subgroups_compute

log = logging.getLogger(__name__)


@shared_task(**RETRY)
def monitoring_summary_task(comparison: dict) -> str:
    """Compute and cache one comparison's summary; returns its cache key."""
    parsed = services.Comparison.from_json(comparison)
    try:
        services.summary_compute(comparison=parsed)
    finally:
        cache.delete(f"{parsed.cache_key}:queued")
    return parsed.cache_key


# The subgroup view's limits: the refresh computes it too (bootstraps over a large window: minutes).
@shared_task(acks_late=True, soft_time_limit=900, time_limit=960)
def monitoring_version_refresh(version_id: int) -> int:
    """Recompute one version's default summaries, and the subgroup view of the overall one (the
    page's default), now (queued, debounced, when its scores arrive)."""
    n = defaults_refresh(version_id=version_id)
    log.info("monitoring: refreshed %d summaries of version %s", n, version_id)
    return n


@shared_task(acks_late=True)
def monitoring_refresh() -> int:
    """Periodic (CELERY_BEAT_SCHEDULE): queue the default comparisons of every production version."""
    comparisons = services.default_comparisons()
    for comparison in comparisons:
        monitoring_summary_task.delay(comparison.as_json())
    log.info("monitoring: queued %d summaries", len(comparisons))
    return len(comparisons)


@shared_task(**RETRY, soft_time_limit=900, time_limit=960)
def monitoring_subgroups_task(comparison: dict) -> str:
    """Compute and cache one comparison's subgroup view (a bootstrap per subgroup: minutes)."""
    parsed = services.Comparison.from_json(comparison)
    key = f"{parsed.cache_key}:subgroups"
    try:
        subgroups_compute(comparison=parsed)
    finally:
        cache.delete(f"{key}:queued")
    return key
