"""Celery tasks of the registry: thin wrappers that take ids and call services."""

import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from models_registry.subgroups import version_subgroups_compute, versions_subgroups_due

log = logging.getLogger(__name__)


# One bootstrap per subgroup: minutes at 200 resamples, longer than the default task limits.
@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError, BrokerError),
    retry_backoff=2,
    max_retries=5,
    soft_time_limit=1800,
    time_limit=1900,
)
def version_subgroups_task(version_id: int) -> str:
    return version_subgroups_compute(version_id=version_id)


@shared_task(acks_late=True)
def subgroups_sweep() -> int:
    """Queue the versions whose subgroup figures are missing (lost message, dead worker, or a
    version registered before subgroup reporting)."""
    if not settings.SUBGROUP_FIGURES_QUEUED:
        return 0
    ids = versions_subgroups_due()
    for version_id in ids:
        version_subgroups_task.delay(version_id)
    return len(ids)
