"""What the registry itself does once a version is committed (models_registry.signals)."""

import logging

from django.conf import settings

from .tasks import version_subgroups_task

log = logging.getLogger(__name__)


def subgroups_on_registration(sender, *, version, **kwargs) -> None:
    """Compute the per-subgroup figures of the new version's reference set."""
    if not settings.SUBGROUP_FIGURES_QUEUED:
        return
    try:
        version_subgroups_task.delay(version.pk)
    except Exception:
        # The broker is down: the sweep queues it instead.
        log.warning("could not queue the subgroup figures of model version %s", version.pk, exc_info=True)
