"""Explaining many predictions at once: bulk ingest, a burst, the sweep.

A batch is claimed in one transaction, explained per model version in one engine call (with every
patient's stability perturbations), and stored in one transaction. Each explanation is still claimed
once and stored only under its own claim; a prediction whose SHAP values do not add up fails alone
with its reason; when the batch itself cannot be computed, its explanations are handed back and
explained one by one, so one poisoned prediction never holds up the others.
"""

import logging
from collections import defaultdict
from collections.abc import Sequence

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DataError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from engine import treeshap as core
from explanations.models import Explanation
from models_registry.models import ModelVersion
from models_registry.serving import ArtifactTampered, serving_model
from patients.models import Prediction

from .explanations import engine_compute_many, explanations_store
from .profiles import ProfileUnavailable, version_profile_loaded

log = logging.getLogger(__name__)


# A lone prediction's task takes others with it once this many lone messages wait behind it (a
# burst of single posts).
BURST_MIN_PENDING = 10
BATCH_MAX = 200


def explanations_backlog(explanation_id: int, *, waiting: int) -> list[int]:
    """[explanation_id] alone, or, when `waiting` other lone predictions' messages wait in the queue
    (at least BURST_MIN_PENDING - 1: single posts arrive faster than they are explained one by one),
    with up to BATCH_MAX - 1 other pending explanations of predictions posted singly.

    Bulk ingest's and the sweep's explanations are left to their own batch messages: a lone task
    that took them would keep the next lone prediction waiting behind hundreds of them. And the
    queue's length, not the pending rows, decides: finding single posts among a bulk backlog scans
    it, so that query runs only when a burst is there to be taken."""
    if waiting < BURST_MIN_PENDING - 1:
        return [explanation_id]
    pending = list(
        Explanation.objects.filter(status=Explanation.Status.PENDING)
        .exclude(prediction__source=Prediction.Source.BULK)
        .exclude(pk=explanation_id)
        .values_list("pk", flat=True)[: BATCH_MAX - 1]
    )
    return [explanation_id, *pending]


def _claim(explanation_ids: Sequence[int]) -> list[Explanation]:
    """Move the pending ones to running (one attempt more each), in one transaction; return them.

    One locking read and one UPDATE for the batch: a row another worker is claiming at this moment
    is skipped (it is being claimed), and only rows still pending are taken. Each model version is
    read once per batch, not once per row: a version's spec and figures are large JSON."""
    S = Explanation.Status
    now = timezone.now()
    with transaction.atomic():
        claimed = list(
            Explanation.objects.select_for_update(skip_locked=True)
            .filter(pk__in=set(explanation_ids), status=S.PENDING)
            .values_list("pk", flat=True)
        )
        Explanation.objects.filter(pk__in=claimed).update(
            status=S.RUNNING, started_at=now, attempts=F("attempts") + 1
        )
    explanations = list(
        Explanation.objects.select_related("prediction")
        .filter(pk__in=claimed, status=S.RUNNING)
        .order_by("pk")
    )
    version_ids = {e.prediction.model_version_id for e in explanations}
    versions = ModelVersion.objects.select_related("registered_model").in_bulk(version_ids)
    for explanation in explanations:
        explanation.prediction.model_version = versions[explanation.prediction.model_version_id]
    return explanations


def _hand_back(explanations: Sequence[Explanation]) -> None:
    for explanation in explanations:
        Explanation.objects.filter(
            pk=explanation.pk, status=Explanation.Status.RUNNING, attempts=explanation.attempts
        ).update(status=Explanation.Status.PENDING)


def _fail(explanation: Explanation, reason: str) -> None:
    Explanation.objects.filter(
        pk=explanation.pk, status=Explanation.Status.RUNNING, attempts=explanation.attempts
    ).update(status=Explanation.Status.FAILED, error=reason, finished_at=timezone.now())


def _version_batch(explanations: list[Explanation]) -> list[int]:
    """Explain one version's claimed explanations together; return the ids to explain alone."""
    version = explanations[0].prediction.model_version
    try:
        serving = serving_model(version)
        profile = version_profile_loaded(version)
    except (ArtifactTampered, ProfileUnavailable) as exc:
        for explanation in explanations:
            _fail(explanation, str(exc))
        return []
    try:
        results = engine_compute_many([e.prediction for e in explanations], serving, profile)
    except SoftTimeLimitExceeded:
        raise  # the task's time is up: not a prediction the engine cannot take
    except Exception as exc:  # one prediction the engine cannot take: explain each alone
        log.warning("batch of %d failed (%s); explaining them one by one", len(explanations), exc)
        _hand_back(explanations)
        return [e.pk for e in explanations]
    try:
        with transaction.atomic():
            good = []
            for explanation, result in zip(explanations, results, strict=True):
                if isinstance(result, core.AdditivityError):
                    log.warning("explanation %s failed: %s", explanation.pk, result)
                    _fail(explanation, str(result))
                else:
                    good.append((explanation, result))
            if good:
                explanations_store([e for e, _ in good], serving.feature_names, [r for _, r in good])
    except (DataError, IntegrityError) as exc:
        # One result the database refuses (not a transient error): nothing of the batch is stored;
        # each is explained alone, so only that one fails, with its reason.
        log.warning("batch of %d not stored (%s); explaining them one by one", len(explanations), exc)
        _hand_back(explanations)
        return [e.pk for e in explanations]
    return []


def explanations_compute_batch(explanation_ids: Sequence[int]) -> list[int]:
    """Claim, explain and store a batch; return the ids that must be explained one by one.

    A transient error (database, shutdown) hands the batch's unfinished explanations back to
    pending and propagates, so the task's retry or the sweep claims them again."""
    explanations = _claim(explanation_ids)
    by_version: dict[int, list[Explanation]] = defaultdict(list)
    for explanation in explanations:
        by_version[explanation.prediction.model_version_id].append(explanation)
    alone: list[int] = []
    try:
        for group in by_version.values():
            alone += _version_batch(group)
    except Exception:
        _hand_back(explanations)
        raise
    return alone
