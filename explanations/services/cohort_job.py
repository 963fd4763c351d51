"""Running a cohort recompute job (see explanations.services.cohort for the whole design):
dispatching its chunks, resuming stalled ones, computing one chunk (stream its rows, explain them in
batches, replace its own partial aggregates and sample), and finalising the job."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import numpy as np
import pandas as pd
from celery import group, signature
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Window
from django.db.models.constants import OnConflict
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from engine import cohort
from engine import treeshap as core
from explanations.models import (
    CohortAggregate,
    CohortChunkAggregate,
    CohortChunkSample,
    CohortJob,
    CohortJobChunk,
    CohortSample,
    Explanation,
)
from models_registry.serving import serving_model
from patients.models import Prediction

from .cohort import EXPLAIN_BATCH, cohort_explanation_add, sample_size

log = logging.getLogger(__name__)

CHUNK_TASK = "explanations.tasks.cohort_chunk_task"


def cohort_job_run(*, job: CohortJob) -> int:
    """Dispatch the job's chunks that are not done (a Celery group); return how many.

    Running it again after a worker died resumes the job. With nothing left to do, the job is
    finalised here.
    """
    now = timezone.now()
    CohortJob.objects.filter(
        pk=job.pk, status__in=[CohortJob.Status.PENDING, CohortJob.Status.FAILED]
    ).update(status=CohortJob.Status.RUNNING, started_at=Coalesce("started_at", now), error="")
    missing = list(
        CohortJobChunk.objects.filter(job=job)
        .exclude(status=CohortJobChunk.Status.DONE)
        .order_by("index")
        .values_list("pk", flat=True)
    )
    if not missing:
        cohort_job_finalize(job_id=job.pk)
        return 0
    CohortJob.objects.filter(pk=job.pk).update(dispatched_at=now)
    # By name: the tasks module imports these services.
    group(signature(CHUNK_TASK, args=(chunk_id,), immutable=True) for chunk_id in missing).apply_async()
    return len(missing)


def cohort_chunk_fail(*, chunk_id: int, reason: str) -> None:
    """Mark a chunk failed (a task time limit or an unexpected error) and its job failed, with the
    reason; the chunks still queued or running go on. Running the job again resumes it."""
    with transaction.atomic():
        updated = (
            CohortJobChunk.objects.filter(pk=chunk_id)
            .exclude(status=CohortJobChunk.Status.DONE)
            .update(status=CohortJobChunk.Status.FAILED, error=reason, finished_at=timezone.now())
        )
        if not updated:
            return  # another run of the chunk finished it
        chunk = CohortJobChunk.objects.select_related("job").get(pk=chunk_id)
        CohortJob.objects.filter(pk=chunk.job_id, status=CohortJob.Status.RUNNING).update(
            status=CohortJob.Status.FAILED,
            error=(
                f"Chunk {chunk.index + 1} of {chunk.job.chunks_total} (predictions {chunk.first_id} to "
                f"{chunk.last_id}) failed: {reason} Resume the job to run the chunks not done."
            ),
        )


def cohort_jobs_stalled_resume(*, now=None) -> list[int]:
    """Re-dispatch running (or finalizing) jobs in which nothing has happened for
    COHORT_STALL_SECONDS; return their ids.

    Nothing happening means no chunk started or finished since the job's chunks were last sent:
    their messages were lost (Redis restarted without persistence) or the worker holding one died
    and the broker has not given it back. Its chunks still marked running (none started after the
    cutoff, and a chunk's task cannot run longer than its time limit, well below it) are put back to
    pending first. Chunks are safe to run twice, so a job that was only waiting behind a long
    queue costs a few duplicate messages, which end at once on chunks already done.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.COHORT_STALL_SECONDS)
    resumed = []
    S = CohortJob.Status
    jobs = CohortJob.objects.filter(status__in=[S.RUNNING, S.FINALIZING], dispatched_at__lt=cutoff).annotate(
        chunk_started=Max("chunks__started_at"), chunk_finished=Max("chunks__finished_at")
    )
    for job in jobs:
        if any(t is not None and t >= cutoff for t in (job.chunk_started, job.chunk_finished)):
            continue
        # Claimed by moving dispatched_at: two sweeps at once resume a job once. A job left
        # finalizing (its worker died inside the finalisation, which then rolled back) is
        # finalised again.
        claimed = CohortJob.objects.filter(pk=job.pk, dispatched_at=job.dispatched_at).update(
            dispatched_at=now, status=S.RUNNING
        )
        if not claimed:
            continue
        CohortJobChunk.objects.filter(job=job, status=CohortJobChunk.Status.RUNNING).update(
            status=CohortJobChunk.Status.PENDING
        )
        log.warning("cohort job %s made no progress since %s; re-dispatching its chunks", job.pk, cutoff)
        cohort_job_run(job=job)
        resumed.append(job.pk)
    return resumed


def _chunk_rows(chunk: CohortJobChunk):
    """Stream (id, features, margin, unit, scored_at) of the chunk's predictions."""
    return (
        Prediction.objects.filter(
            model_version_id=chunk.job.version_id, pk__gte=chunk.first_id, pk__lte=chunk.last_id
        )
        .order_by("pk")
        .values_list("pk", "features", "margin", "unit", "scored_at")
        .iterator(chunk_size=EXPLAIN_BATCH)
    )


def _batches(rows, size: int):
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Stages(dict):
    """Seconds spent per stage of a chunk, added up over its batches."""

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self[stage] = self.get(stage, 0.0) + (now - since)
        return now


def _chunk_explained(chunk: CohortJobChunk, serving, stages: _Stages) -> dict:
    """Stream the chunk's predictions in batches, explain each batch in one engine call, keep the
    rows that add up (arrays bounded by the chunk size)."""
    ids, units, scored, values, shap = [], [], [], [], []
    rows_failed = 0
    tick = time.perf_counter()
    for batch in _batches(_chunk_rows(chunk), EXPLAIN_BATCH):
        batch_ids, features, margins, batch_units, batch_scored = zip(*batch)  # noqa: B905
        tick = stages.add("fetch", tick)
        matrix = serving.encode_many(features)
        tick = stages.add("encode", tick)
        attribution = core.explain(serving.explainer, matrix)
        ok = core.additivity_error(attribution, np.asarray(margins)) <= core.ADDITIVITY_TOLERANCE
        tick = stages.add("shap", tick)
        rows_failed += int((~ok).sum())
        ids.append(np.asarray(batch_ids, dtype=np.int64)[ok])
        units.append(np.asarray(batch_units, dtype=object)[ok])
        scored.extend(t for t, good in zip(batch_scored, ok, strict=True) if good)
        values.append(matrix[ok])
        shap.append(attribution.values[ok])
    stages.add("fetch", tick)  # the last, empty read
    n = len(serving.feature_names)
    return {
        "ids": np.concatenate(ids) if ids else np.empty(0, dtype=np.int64),
        "units": np.concatenate(units) if units else np.empty(0, dtype=object),
        "scored": scored,
        "values": np.vstack(values) if values else np.empty((0, n)),
        "shap": np.vstack(shap) if shap else np.empty((0, n)),
        "rows_failed": rows_failed,
    }


def cohort_chunk_compute(*, chunk_id: int) -> CohortJobChunk:
    """Explain one chunk's rows and replace its partial aggregates and sample."""

    chunk = CohortJobChunk.objects.select_related("job__version").get(pk=chunk_id)
    if chunk.status == CohortJobChunk.Status.DONE:
        return chunk
    CohortJobChunk.objects.filter(pk=chunk_id).update(
        status=CohortJobChunk.Status.RUNNING, attempts=F("attempts") + 1, started_at=timezone.now(), error=""
    )
    started = time.perf_counter()
    stages = _Stages()
    job = chunk.job
    serving = serving_model(job.version)
    names = serving.feature_names
    rows = _chunk_explained(chunk, serving, stages)
    tick = time.perf_counter()
    ids, values, shap = rows["ids"], rows["values"], rows["shap"]
    shifts, days = cohort.slices_of(rows["scored"], settings.HOSPITAL_TIME_ZONE)
    keys = pd.DataFrame({"unit": rows["units"], "shift": shifts, "day": days})
    partial = cohort.aggregate(shap, keys, names)
    # The sample is picked on ids and priorities; only the rows kept are turned into JSON.
    candidates = keys.assign(prediction_id=ids, priority=cohort.priorities(ids), row=np.arange(len(ids)))
    sample = _sample_prune(cohort.bottom_k(candidates, sample_size()), job_id=job.pk, chunk_id=chunk_id)
    tick = stages.add("aggregate", tick)
    with transaction.atomic():
        locked = CohortJobChunk.objects.select_for_update().get(pk=chunk_id)
        if locked.status == CohortJobChunk.Status.DONE:
            return locked  # another run of the same chunk finished first
        _chunk_results_replace(chunk_id, partial, sample, values, shap)
        stages.add("write", tick)
        locked.status = CohortJobChunk.Status.DONE
        locked.rows = len(ids)
        locked.rows_failed = rows["rows_failed"]
        locked.seconds = time.perf_counter() - started
        locked.stage_seconds = {stage: round(seconds, 4) for stage, seconds in stages.items()}
        locked.finished_at = timezone.now()
        locked.save()
    if not CohortJobChunk.objects.filter(job_id=job.pk).exclude(status=CohortJobChunk.Status.DONE).exists():
        cohort_job_finalize(job_id=job.pk)
    return locked


def _chunk_results_replace(chunk_id: int, partial, sample, values: np.ndarray, shap: np.ndarray) -> None:
    """The chunk's partial aggregates and sample rows, replacing a previous run's, in multi-row
    statements. Call inside the transaction that marks the chunk done."""
    CohortChunkAggregate.objects.filter(chunk_id=chunk_id).delete()
    CohortChunkSample.objects.filter(chunk_id=chunk_id).delete()
    day = connection.ops.adapt_datefield_value
    _rows_insert(
        CohortChunkAggregate,
        ["chunk", "feature", "unit", "shift", "day", "count", "total", "total_abs"],
        [
            (chunk_id, r.feature, r.unit, r.shift, day(r.day))
            + (int(r.count), float(r.total), float(r.total_abs))
            for r in partial.itertuples(index=False)
        ],
    )
    _rows_insert(
        CohortChunkSample,
        ["chunk", "unit", "shift", "day", "prediction_id", "priority", "values", "shap"],
        [
            (
                chunk_id,
                r.unit,
                r.shift,
                day(r.day),
                int(r.prediction_id),
                float(r.priority),
                json.dumps(cohort.json_floats(values[r.row])),
                json.dumps(shap[r.row].tolist()),
            )
            for r in sample.itertuples(index=False)
        ],
    )


def _sample_prune(sample: pd.DataFrame, *, job_id: int, chunk_id: int) -> pd.DataFrame:
    """Drop the rows that can no longer be in their slice's final sample.

    A row is dropped when other chunks of the job already hold COHORT_SAMPLE_SIZE rows of its slice
    with a smaller priority: those rows are real predictions of the job, so the row is not among the
    smallest of the whole job, whatever happens later (a re-run chunk stores the same rows or fewer,
    never fewer of the final ones). The chunks done early store their whole bottom-k; later ones
    store fewer and fewer, so stored samples and finalisation stop growing with the cohort.
    """
    if sample.empty:
        return sample
    kth = (
        CohortChunkSample.objects.filter(chunk__job_id=job_id)
        .exclude(chunk_id=chunk_id)
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("unit"), F("shift"), F("day")],
                order_by=[F("priority").asc(), F("prediction_id").asc()],
            )
        )
        .filter(rank=sample_size())
        .values_list("unit", "shift", "day", "priority")
    )
    bounds = {(unit, shift, day): p for unit, shift, day, p in kth}
    if not bounds:
        return sample
    bound = np.array(
        [bounds.get(key, np.inf) for key in zip(sample["unit"], sample["shift"], sample["day"], strict=True)]
    )
    return sample[sample["priority"].to_numpy() <= bound].reset_index(drop=True)


def _rows_insert(model, fields: list[str], rows: list[tuple]) -> None:
    """Multi-row INSERTs of `rows` (values in `fields` order, already as the database takes them).

    bulk_create spends about 0.25 ms of Python per row preparing fields: more than everything else
    a chunk does besides SHAP.
    """
    quote = connection.ops.quote_name
    columns = ", ".join(quote(model._meta.get_field(name).column) for name in fields)
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    per_statement = min(2000, (connection.features.max_query_params or 2**16) // len(fields))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            part = rows[start : start + per_statement]
            cursor.execute(
                f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES "  # noqa: S608
                + ", ".join([placeholders] * len(part)),
                [value for row in part for value in row],
            )


def cohort_job_finalize(*, job_id: int) -> CohortJob:
    """Replace the version's aggregates and samples with the job's (claimed: runs once)."""
    claimed = CohortJob.objects.filter(pk=job_id, status=CohortJob.Status.RUNNING).update(
        status=CohortJob.Status.FINALIZING, dispatched_at=timezone.now()
    )
    job = CohortJob.objects.get(pk=job_id)
    if not claimed:
        return job
    version_id = job.version_id
    try:
        with transaction.atomic():
            CohortAggregate.objects.filter(version_id=version_id).delete()
            CohortSample.objects.filter(version_id=version_id).delete()
            _job_results_insert(job)
            _tail_add(job)
            CohortJob.objects.filter(pk=job_id).update(
                status=CohortJob.Status.DONE, finished_at=timezone.now()
            )
    except Exception as exc:
        CohortJob.objects.filter(pk=job_id).update(
            status=CohortJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}"
        )
        raise
    job.refresh_from_db()
    return job


def _job_results_insert(job: CohortJob) -> None:
    """Sum the chunks' partials and take each slice's bottom-k of the chunks' samples into the
    version's tables, in SQL: nothing cohort-sized passes through the worker."""
    ops = connection.ops
    chunks = CohortJobChunk._meta.db_table
    values = ops.quote_name("values")  # a reserved word
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {CohortAggregate._meta.db_table} "  # noqa: S608
            "(version_id, feature, unit, shift, day, count, total, total_abs) "
            "SELECT %s, p.feature, p.unit, p.shift, p.day, SUM(p.count), SUM(p.total), SUM(p.total_abs) "
            f"FROM {CohortChunkAggregate._meta.db_table} p JOIN {chunks} c ON c.id = p.chunk_id "
            "WHERE c.job_id = %s GROUP BY p.feature, p.unit, p.shift, p.day",
            [job.version_id, job.pk],
        )
        cursor.execute(
            f"{ops.insert_statement(on_conflict=OnConflict.IGNORE)} {CohortSample._meta.db_table} "  # noqa: S608
            f"(version_id, unit, shift, day, prediction_id, priority, {values}, shap) "
            f"SELECT %s, r.unit, r.shift, r.day, r.prediction_id, r.priority, r.{values}, r.shap FROM ("
            f"SELECT p.*, ROW_NUMBER() OVER (PARTITION BY p.unit, p.shift, p.day "
            "ORDER BY p.priority, p.prediction_id) AS sample_rank "
            f"FROM {CohortChunkSample._meta.db_table} p JOIN {chunks} c ON c.id = p.chunk_id "
            "WHERE c.job_id = %s) r WHERE r.sample_rank <= %s "
            + ops.on_conflict_suffix_sql([], OnConflict.IGNORE, None, None),
            [job.version_id, job.pk, sample_size()],
        )


def _tail_add(job: CohortJob) -> None:
    """Ready explanations of predictions newer than the job's chunks: add their stored SHAP values."""

    serving = serving_model(job.version)
    tail = (
        Explanation.objects.filter(
            prediction__model_version_id=job.version_id,
            status=Explanation.Status.READY,
            prediction_id__gt=job.max_prediction_id,
        )
        .select_related("prediction")
        .iterator(chunk_size=500)
    )
    for explanation in tail:
        prediction = explanation.prediction
        shap = np.array([c["shap"] for c in explanation.contributions])
        cohort_explanation_add(
            prediction=prediction,
            names=serving.feature_names,
            values=serving.encode(prediction.features),
            shap=shap,
        )
