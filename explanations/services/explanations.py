"""The explanation of a prediction: queued after ingest, computed by a Celery worker."""

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from celery import signature
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from engine import profile as engine
from engine import stability
from engine import treeshap as core
from engine.quality import quality_flags
from explanations.models import Explanation
from explanations.signals import explanations_stored
from models_registry.serving import ArtifactTampered, serving_model
from sightline.celery import app

from .cohort import cohort_explanations_add
from .current import current_lanes_refresh
from .profiles import ProfileUnavailable, engine_options, stability_explainer, version_profile_loaded
from .ready import explanations_mark_ready, figures_of

log = logging.getLogger(__name__)


# Explanations per task message when many are queued at once (bulk ingest, the sweep): one engine
# call and one transaction per message (services/explanation_batch.py); a lone prediction is its
# own message, explained at once on the low-latency path.
ENQUEUE_BATCH = 200  # explanation_batch.BATCH_MAX


def _messages(explanation_ids: Sequence[int]):
    """(task signature, how many explanations it carries). Tasks by name: the tasks module imports
    these services."""
    if len(explanation_ids) == 1:
        yield signature("explanations.tasks.explanation_compute_task", args=(explanation_ids[0],)), 1
        return
    for start in range(0, len(explanation_ids), ENQUEUE_BATCH):
        chunk = list(explanation_ids[start : start + ENQUEUE_BATCH])
        yield signature("explanations.tasks.explanation_compute_batch_task", args=(chunk,)), len(chunk)


def explanations_enqueue(explanation_ids: Sequence[int]) -> int:
    """Queue explanation tasks; return how many explanations were queued.

    Called after commit. When the broker is unreachable the predictions are already stored
    and acknowledged, so the failure is logged and the periodic sweep queues them later.
    """
    from kombu.exceptions import OperationalError as BrokerError
    from redis.exceptions import RedisError

    if app.conf.task_always_eager:
        # No broker (the embedded default, or tests): the tasks run here and now.
        for task, _ in _messages(explanation_ids):
            task.apply_async()
        return len(explanation_ids)
    queued = 0
    try:
        with app.producer_or_acquire() as producer:
            for task, count in _messages(explanation_ids):
                task.apply_async(producer=producer)
                queued += count
    except (BrokerError, RedisError, ConnectionError) as exc:
        log.error(
            "broker unreachable, %d explanation(s) left pending for the sweep: %s",
            len(explanation_ids) - queued,
            exc,
        )
    return queued


def engine_compute_many(predictions: Sequence, serving, profile) -> list[dict | core.AdditivityError]:
    """Explain the predictions of one version together: one engine call over the whole background
    for all of them, one over the stability subsample for all of them and their perturbations, one
    uncertainty pass and one similar-patients query; then stability per patient. One entry per
    prediction, in order: its figures, or the AdditivityError that makes it fail alone (its SHAP
    values do not add up to its stored log-odds)."""

    opts = profile.options(engine_options())
    n = int(opts["stability_perturbations"])
    rows = np.vstack([serving.encode(p.features) for p in predictions])
    perturbed = [
        serving.model.prepare(
            stability.perturb(row, profile.precision, n, seed=p.pk, lower=profile.lower, upper=profile.upper)
        )
        for row, p in zip(rows, predictions, strict=True)
    ]
    attribution = core.explain(serving.explainer, rows)
    # The patients again with their perturbations, in one call, against a background subsample.
    explainer = stability_explainer(predictions[0].model_version, serving, int(opts["stability_background"]))
    batch = core.explain(explainer, np.vstack([rows, *perturbed]))
    quality = predictions[0].model_version.quality_specs()
    # Uncertainty and similar patients for the whole batch: one distance pass, one neighbour query.
    outcome = predictions[0].model_version.registered_model.outcome
    risks = [p.risk for p in predictions]
    uncertainties = engine.patients_uncertainty(profile, rows, risks, outcome, opts)
    similar = engine.patients_similar(profile, attribution.values, outcome, opts)
    out: list[dict | core.AdditivityError] = []
    for i, prediction in enumerate(predictions):
        one = core.Attribution(
            attribution.base_value, attribution.values[i : i + 1], attribution.background_size
        )
        try:
            error = core.check_additivity(one, np.array([prediction.margin]))
        except core.AdditivityError as exc:
            out.append(exc)
            continue
        start = len(predictions) + i * n
        figures = _figures(serving, opts, rows[i], one, error, batch, (i, start, start + n))
        figures["uncertainty"], figures["similar_patients"] = uncertainties[i], similar[i]
        figures["quality_flags"] = quality_flags(prediction.features or {}, quality)
        out.append(figures)
    return out


def _figures(serving, opts, row, attribution, error, batch, where) -> dict:
    """One patient's SHAP and stability figures from the batch's engine results (`where`: the
    patient's row and its perturbations' rows in `batch`)."""
    shap = attribution.values[0]
    points = core.probability_points(attribution.base_value, shap)
    names = serving.feature_names
    own, lo, hi = where
    return {
        "row": row,
        "shap": shap,
        "base_value": attribution.base_value,
        "background_size": attribution.background_size,
        "additivity_error": error,
        "contributions": [
            {"name": n, "shap": float(v), "points": float(p)}
            for n, v, p in zip(names, shap, points, strict=True)
        ],
        "stability": {
            **stability.stability_summary(
                batch.values[own], batch.values[lo:hi], names, float(opts["stability_threshold"])
            ),
            "background_size": batch.background_size,
        },
    }


def explanation_compute(*, explanation_id: int) -> Explanation:
    """Compute and store the explanation of a prediction; claimed so it runs once.

    A pending explanation is claimed by one worker; anything else (already claimed, ready,
    failed) is returned as it is. An additivity failure, a changed artifact or a profile that
    cannot be built is stored as `failed` with the reason, never as numbers. The cohort
    aggregates are updated in the transaction that marks it ready.
    """

    claimed = Explanation.objects.filter(id=explanation_id, status=Explanation.Status.PENDING).update(
        status=Explanation.Status.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1
    )
    explanation = Explanation.objects.select_related("prediction__model_version__registered_model").get(
        pk=explanation_id
    )
    if not claimed:
        return explanation
    prediction = explanation.prediction
    try:
        serving = serving_model(prediction.model_version)
        profile = version_profile_loaded(prediction.model_version)
        result = engine_compute_many([prediction], serving, profile)[0]
        if isinstance(result, core.AdditivityError):
            raise result
    except (core.AdditivityError, ArtifactTampered, ProfileUnavailable) as exc:
        log.warning("explanation %s failed: %s", explanation_id, exc)
        Explanation.objects.filter(pk=explanation_id, status=Explanation.Status.RUNNING).update(
            status=Explanation.Status.FAILED, error=str(exc), finished_at=timezone.now()
        )
        explanation.refresh_from_db()
        return explanation
    except Exception:
        # A transient failure (database, worker shutdown): hand the row back so a retry or the
        # sweep can claim it again, instead of leaving it "running" until the sweep notices.
        Explanation.objects.filter(pk=explanation_id, status=Explanation.Status.RUNNING).update(
            status=Explanation.Status.PENDING
        )
        raise
    with transaction.atomic():
        explanation_store(explanation, serving.feature_names, result)
    explanation.refresh_from_db()
    return explanation


def explanations_store(explanations: Sequence[Explanation], names: list[str], results: Sequence[dict]) -> int:
    """Store computed explanations of one version; return how many were stored. Each is stored
    (ready, and counted in its cohort) only if it is still running under the claim that computed it
    (same attempt): a worker the sweep took the row away from, or a second copy of its message,
    stores nothing, so nothing is ever explained or counted twice. The cohort aggregates and the
    worklist lanes are written once for the batch. Call inside a transaction."""
    claims = [(e, figures_of(r)) for e, r in zip(explanations, results, strict=True)]
    written = explanations_mark_ready(claims, timezone.now())
    stored, abstaining = [], []
    for explanation, result in zip(explanations, results, strict=True):
        if explanation.pk in written:
            stored.append((explanation.prediction, result["row"], result["shap"]))
            if result["uncertainty"]["abstain"]:
                abstaining.append(explanation.prediction_id)
    if stored:
        version_id = stored[0][0].model_version_id
        cohort_explanations_add(version_id=version_id, names=names, items=stored)
        # Once stored (a lone explanation or a batch alike): monitoring may refresh the version's
        # summaries when this emptied its backlog. robust: a listener's failure is logged, never ours.
        transaction.on_commit(lambda: explanations_stored.send(None, version_ids={version_id}), robust=True)
    if abstaining:
        # An abstaining score leaves the worklist's ranked lane for the abstentions' own.
        current_lanes_refresh(prediction_ids=abstaining)
    return len(stored)


def explanation_store(explanation: Explanation, names: list[str], result: dict) -> bool:
    """Store one computed explanation (see explanations_store). Call inside a transaction."""
    return bool(explanations_store([explanation], names, [result]))


def explanation_fail(*, explanation_id: int, reason: str) -> None:
    """Mark a claimed explanation failed (e.g. it exceeded its time limit)."""
    Explanation.objects.filter(pk=explanation_id).exclude(status=Explanation.Status.READY).update(
        status=Explanation.Status.FAILED, error=reason, finished_at=timezone.now()
    )


# An explanation that keeps getting lost (a worker killed mid-task each time) stops being retried.
MAX_ATTEMPTS = 5


def explanations_stuck_requeue(*, now: datetime | None = None) -> list[int]:
    """Find explanations pending or running longer than EXPLANATION_STUCK_SECONDS; return their ids.

    A running one is reset to pending first, so the re-queued task can claim it. Its queued_at
    is moved to now, so one still waiting in a long queue is not queued again at every sweep.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.EXPLANATION_STUCK_SECONDS)
    S = Explanation.Status
    lost = Q(status=S.RUNNING, started_at__lt=cutoff) | Q(status=S.PENDING, queued_at__lt=cutoff)
    Explanation.objects.filter(lost, attempts__gte=MAX_ATTEMPTS).update(
        status=S.FAILED,
        error=f"Gave up after {MAX_ATTEMPTS} attempts: the worker was lost each time.",
        finished_at=now,
    )
    Explanation.objects.filter(status=S.RUNNING, started_at__lt=cutoff).update(
        status=S.PENDING, queued_at=cutoff
    )
    with transaction.atomic():
        ids = list(
            Explanation.objects.select_for_update(skip_locked=True)
            .filter(status=S.PENDING, queued_at__lte=cutoff)
            .values_list("pk", flat=True)
        )
        Explanation.objects.filter(pk__in=ids).update(queued_at=now)
    return ids


def explanations_failed_retry(
    *, error_contains: str = "", since: datetime | None = None, version_id: int | None = None
) -> list[int]:
    """Give failed explanations another go (after the cause is fixed): back to pending with their
    attempts reset, their error kept in the log; returns their ids, for explanations_enqueue. Only
    those whose error contains `error_contains` (case-insensitive), scored `since`, of one version."""
    S = Explanation.Status
    failed = Explanation.objects.filter(status=S.FAILED)
    if error_contains:
        failed = failed.filter(error__icontains=error_contains)
    if since is not None:
        failed = failed.filter(prediction__scored_at__gte=since)
    if version_id is not None:
        failed = failed.filter(prediction__model_version_id=version_id)
    with transaction.atomic():
        rows = list(failed.select_for_update(skip_locked=True).values_list("pk", "error"))
        for pk, error in rows:
            log.info("explanation %s to retry; it had failed with: %s", pk, error)
        Explanation.objects.filter(pk__in=[pk for pk, _ in rows], status=S.FAILED).update(
            status=S.PENDING,
            attempts=0,
            error="",
            queued_at=timezone.now(),
            started_at=None,
            finished_at=None,
        )
    return [pk for pk, _ in rows]
