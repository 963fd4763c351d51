"""What the explanation side does when the registry announces something (models_registry.signals)."""

import logging

from .tasks import version_profile_build_task

log = logging.getLogger(__name__)


def profile_build_on_registration(sender, *, version, **kwargs) -> None:
    """Fit uncertainty, similar patients and stability on the new version's reference set now,
    rather than in the first explanation that needs them."""
    try:
        version_profile_build_task.delay(version.pk)
    except Exception:
        # The broker is down: the sweep, or the first explanation of this version, builds it instead.
        log.warning("could not queue the profile build of model version %s", version.pk, exc_info=True)
