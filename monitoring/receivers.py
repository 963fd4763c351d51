"""What monitoring does when ingest announces new scores or the worker a batch of explanations
(explanations.signals)."""

import contextlib
import logging

from django.conf import settings
from django.core.cache import cache
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from explanations.models import Explanation
from sightline.celery import app

from .services import CACHE_PREFIX
from .tasks import monitoring_version_refresh

log = logging.getLogger(__name__)


def summaries_refresh_on_scores(sender, *, version_ids, **kwargs) -> None:
    """Queue one refresh of each version's default summaries, at most once per debounce period:
    the first scores of a burst schedule it, the rest of the burst finds it scheduled. With tasks
    run in-process (the embedded default) nothing is queued: the refresh would run inside the
    scoring service's request, and the dashboard computes what it needs when it is opened."""
    if app.conf.task_always_eager:
        return
    debounce = int(settings.MONITORING_REFRESH_DEBOUNCE_SECONDS)
    for version_id in sorted(version_ids):
        key = f"{CACHE_PREFIX}:refresh-scheduled:{version_id}"
        try:
            if cache.add(key, 1, timeout=debounce):
                monitoring_version_refresh.apply_async((version_id,), countdown=debounce)
        except (BrokerError, RedisError, ConnectionError, OSError) as exc:
            # The scores are stored and acknowledged; the periodic refresh recomputes the summaries.
            log.warning("monitoring refresh of version %s not scheduled: %s", version_id, exc)
            with contextlib.suppress(RedisError, ConnectionError, OSError):
                cache.delete(key)  # the next scores try again


def summaries_refresh_when_explained(sender, *, version_ids, **kwargs) -> None:
    """The last batch of a version's backlog is stored (none of its explanations is left pending or
    running): refresh its summaries once more (debounced), so their attribution drift counts every
    explanation of the scores, not only those ready when the scores' refresh ran."""
    if app.conf.task_always_eager:
        return  # nothing is queued in-process (see summaries_refresh_on_scores)
    left = Explanation.objects.filter(status__in=[Explanation.Status.PENDING, Explanation.Status.RUNNING])
    done = {v for v in version_ids if not left.filter(prediction__model_version_id=v).exists()}
    if done:
        summaries_refresh_on_scores(sender, version_ids=done)
