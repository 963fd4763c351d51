"""Prediction ingest (CONTRACT.md section 2): validate, score, store, queue the explanation."""

import logging
from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction
from rest_framework import status

from explanations.signals import predictions_stored
from patients.models import Prediction
from sightline.api_errors import ApiError

from . import storage
from .explanations import explanations_enqueue
from .validation import (
    IngestResult,
    Item,
    Registry,
    features_check,
    model_resolve,
    score,
    shape_check,
    version_resolve,
)

log = logging.getLogger(__name__)

# Rows per transaction in bulk ingest: bounded lock time, one commit per chunk.
BULK_CHUNK = 500
# Tries of a chunk that keeps meeting keys stored concurrently (each try answers those it met).
CHUNK_ATTEMPTS = 3


# --- replays ------------------------------------------------------------------------------------


def _conflict(item: Item) -> ApiError:
    return ApiError(
        code="idempotency_conflict",
        detail=(
            f"A different prediction was already stored as '{item.data['external_id']}' for model "
            f"'{item.data['model']}'; a new prediction needs a new external_id."
        ),
        status_code=status.HTTP_409_CONFLICT,
        fields={"external_id": ["Already used with a different body."]},
    )


def _replays_answer(items: list[Item]) -> None:
    """Answer the items whose key is already stored, from what is stored: the same body is a
    replay (the stored prediction, created=False), another body a 409. One query per model."""
    keys: dict[int, list[str]] = {}
    for item in items:
        keys.setdefault(item.registered_model.pk, []).append(item.data["external_id"])
    stored: dict[tuple[int, str], tuple[int, str]] = {}
    for model_id, external_ids in keys.items():
        rows = Prediction.objects.filter(registered_model_id=model_id, external_id__in=external_ids)
        for pk, external_id, sha256 in rows.values_list("pk", "external_id", "payload_sha256"):
            stored[model_id, external_id] = (pk, sha256)
    hits = {}
    for item in items:
        hit = stored.get((item.registered_model.pk, item.data["external_id"]))
        if hit is not None:
            hits[item.index] = hit
    loaded = Prediction.objects.select_related("explanation", "alert").in_bulk(
        [pk for pk, _ in hits.values()]
    )
    for item in items:
        if item.index in hits:
            pk, sha256 = hits[item.index]
            if sha256 != item.sha256:
                item.error = _conflict(item)
            else:
                item.result = IngestResult(prediction=loaded[pk], created=False)


# --- storage -----------------------------------------------------------------------------------


def _after_commit(explanation_ids: list[int], version_ids: set[int]) -> None:
    """Once the chunk is stored: queue its explanations, and tell whoever listens which versions scored."""
    explanations_enqueue(explanation_ids)
    predictions_stored.send(None, version_ids=version_ids)


def _chunk_commit(chunk: list[Item], *, source: str, simulated: bool) -> None:
    """Store a chunk in one transaction; its explanations are queued once it commits.

    If a concurrent request stored one of its keys or encounters meanwhile, the chunk rolls back,
    the stored keys are read again (those items become replays or conflicts) and it is retried.
    """
    for attempt in range(1, CHUNK_ATTEMPTS + 1):
        todo = [i for i in chunk if i.error is None and i.result is None]
        if not todo:
            return
        try:
            with transaction.atomic():
                stored = storage.chunk_store(todo, source=source, simulated=simulated)
                if stored.explanation_ids:
                    ids = stored.explanation_ids
                    versions = {p.model_version_id for p in stored.predictions.values()}
                    transaction.on_commit(lambda ids=ids, v=versions: _after_commit(ids, v))
        except (IntegrityError, storage.Raced) as exc:
            if attempt == CHUNK_ATTEMPTS:
                raise
            log.info("bulk ingest chunk raced a concurrent request (%s); retrying", exc)
            _replays_answer(todo)
            continue
        for item in todo:
            if item.index in stored.errors:
                item.error = stored.errors[item.index]
            else:
                item.result = IngestResult(prediction=stored.predictions[item.index], created=True)
        return


def prediction_ingest_many(
    *, payloads: Sequence[Any], source: str, simulated: bool = False
) -> list[IngestResult | ApiError]:
    """Validate, score and store predictions; one result or error per payload, in order.

    Each prediction is stored on its own (a savepoint each), so a bad one never keeps the
    others out, and nothing of a failed one is stored. Valid rows of one model version are
    scored in a single model call.
    """
    items = [Item(index=i, payload=p) for i, p in enumerate(payloads)]
    registry = Registry()
    for item in items:
        shape_check(item)
        if item.error is None:
            model_resolve(item, registry)

    # Replays and conflicts are answered from what is stored, before anything is computed.
    _replays_answer([i for i in items if i.error is None])
    for item in items:
        if item.error is None and item.result is None:
            version_resolve(item, registry)
        if item.error is None and item.result is None:
            features_check(item)

    pending = [i for i in items if i.error is None and i.result is None]
    score(pending)
    pending = [i for i in pending if i.error is None]

    # A key repeated within the request: the first one is stored, then the repeats are answered
    # as replays or conflicts of it (or stored, if the first one failed).
    while pending:
        firsts: dict[tuple[int, str], Item] = {}
        repeats = []
        for item in pending:
            key = (item.registered_model.pk, item.data["external_id"])
            if key in firsts:
                repeats.append(item)
            else:
                firsts[key] = item
        # Stored in patient then encounter order, so concurrent requests for the same patients
        # take their row and unique-key locks in one order and cannot deadlock each other.
        ordered = sorted(
            firsts.values(), key=lambda i: (i.data["patient"]["id"], i.data.get("encounter_id") or "")
        )
        for start in range(0, len(ordered), BULK_CHUNK):
            _chunk_commit(ordered[start : start + BULK_CHUNK], source=source, simulated=simulated)
        if repeats:
            _replays_answer(repeats)
        pending = [i for i in repeats if i.error is None and i.result is None]
    return [item.error if item.error is not None else item.result for item in items]


def prediction_ingest(*, payload: dict, source: str, simulated: bool = False) -> IngestResult:
    """Validate, score and store one prediction (CONTRACT.md section 2); raise ApiError if it fails.

    Idempotent on (model, external_id): the same body again returns the stored prediction with
    created=False; another body under the same key raises 409. The explanation is computed by
    a Celery task queued after the transaction commits.
    """
    (result,) = prediction_ingest_many(payloads=[payload], source=source, simulated=simulated)
    if isinstance(result, ApiError):
        raise result
    return result
