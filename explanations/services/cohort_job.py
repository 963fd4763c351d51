"""Running a cohort recompute job (see explanations.services.cohort for the whole design):
dispatching its chunks, resuming stalled ones, computing one chunk (stream its rows, explain them in
batches, replace its own partial aggregates and sample), and finalising the job."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from itertools import islice

import numba
import numpy as np
from celery import group, signature
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max
from django.db.models.constants import OnConflict
from django.db.models.functions import Coalesce
from django.utils import timezone

from common.bulk import rows_write
from engine import cohort
from engine import treeshap as core
from engine.encoding import bare
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

from .cohort import EXPLAIN_BATCH, cohort_explanations_add, sample_size

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


def _chunk_batches(chunk: CohortJobChunk, names: list[str]):
    """Stream the chunk's predictions in id order, EXPLAIN_BATCH at a time: (ids, margins, units,
    scoring times as UTC microseconds, one sequence of bare feature values per feature of `names`).
    PostgreSQL takes each feature's bare value out of the stored entries and sends a small JSON array
    per row, decoded a batch at a time (decoding each row's whole features object cost more than
    SHAP). Elsewhere (SQLite) the ORM reads the rows."""
    between = [chunk.job.version_id, chunk.first_id, chunk.last_id]
    if connection.vendor != "postgresql":
        rows = iter(
            Prediction.objects.filter(model_version_id=between[0], pk__gte=between[1], pk__lte=between[2])
            .order_by("pk")
            .values_list("pk", "margin", "unit", "scored_at", "features")
            .iterator(chunk_size=EXPLAIN_BATCH)
        )
        while batch := list(islice(rows, EXPLAIN_BATCH)):
            ids, margins, units, scored, features = zip(*batch, strict=True)
            columns = [[bare(entries.get(name)) for entries in features] for name in names]
            yield ids, margins, units, cohort.utc_microseconds(scored), columns
        return
    quote = connection.ops.quote_name
    column = {name: quote(Prediction._meta.get_field(name).column) for name in ("model_version", "features")}
    entry = f"{column['features']} -> %s"
    value = f"CASE WHEN jsonb_typeof({entry}) = 'object' THEN {entry} -> 'value' ELSE {entry} END"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, margin, unit, (EXTRACT(EPOCH FROM scored_at) * 1000000)::bigint, "  # noqa: S608
            f"array_to_json(ARRAY[{', '.join([value] * len(names))}]::jsonb[])::text "
            f"FROM {quote(Prediction._meta.db_table)} WHERE {column['model_version']} = %s "
            "AND id BETWEEN %s AND %s ORDER BY id",
            [name for name in names for _ in range(3)] + between,
        )
        while batch := cursor.fetchmany(EXPLAIN_BATCH):
            ids, margins, units, times, values = zip(*batch, strict=True)
            rows = json.loads("[" + ",".join(values) + "]")
            yield ids, margins, units, np.asarray(times, dtype=np.int64), list(zip(*rows, strict=True))


class _Stages(dict):
    """Seconds spent per stage of a chunk, added up over its batches."""

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self[stage] = self.get(stage, 0.0) + (now - since)
        return now


def _chunk_explained(chunk: CohortJobChunk, serving, stages: _Stages) -> tuple:
    """Stream the chunk's predictions in batches, explain each batch in one engine call, keep the
    rows that add up: (ids, units, scoring times, encoded values, SHAP values, rows failed), arrays
    bounded by the chunk size."""
    n, rows_failed = len(serving.feature_names), 0
    parts = [[np.empty(0, dtype) for dtype in (np.int64, object, np.int64)] + [np.empty((0, n))] * 2]
    tick = time.perf_counter()
    for ids, margins, units, times, columns in _chunk_batches(chunk, serving.feature_names):
        tick = stages.add("fetch", tick)
        matrix = serving.encode_columns(columns)
        tick = stages.add("encode", tick)
        attribution = core.explain(serving.explainer, matrix)
        ok = core.additivity_error(attribution, np.asarray(margins)) <= core.ADDITIVITY_TOLERANCE
        tick = stages.add("shap", tick)
        rows_failed += int((~ok).sum())
        batch = (np.asarray(ids, dtype=np.int64), np.asarray(units, dtype=object), times, matrix)
        parts.append([column[ok] for column in batch] + [attribution.values[ok]])
    stages.add("fetch", tick)  # the last, empty read
    return (*(np.concatenate(column) for column in zip(*parts, strict=True)), rows_failed)


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
    serving = serving_model(chunk.job.version)
    # One SHAP thread: the job runs a chunk per worker process, one process per core. Two threads
    # per process on 2 cores doubled the job's CPU per row (idle threads spin between batches).
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        *explained, rows_failed = _chunk_explained(chunk, serving, stages)
    finally:
        numba.set_num_threads(threads)
    tick = time.perf_counter()
    partial, samples = _chunk_results(chunk, serving.feature_names, *explained)
    tick = stages.add("aggregate", tick)
    with transaction.atomic():
        locked = CohortJobChunk.objects.select_for_update().get(pk=chunk_id)
        if locked.status == CohortJobChunk.Status.DONE:
            return locked  # another run of the same chunk finished first
        # Replace a previous run's rows, in the transaction that marks the chunk done.
        CohortChunkAggregate.objects.filter(chunk_id=chunk_id).delete()
        CohortChunkSample.objects.filter(chunk_id=chunk_id).delete()
        rows_write(CohortChunkAggregate, ["chunk", *AGGREGATE_FIELDS], partial)
        rows_write(CohortChunkSample, ["chunk", *SAMPLE_FIELDS], samples)
        stages.add("write", tick)
        locked.status = CohortJobChunk.Status.DONE
        locked.rows = len(explained[0])
        locked.rows_failed = rows_failed
        locked.seconds = time.perf_counter() - started
        locked.stage_seconds = {stage: round(seconds, 4) for stage, seconds in stages.items()}
        locked.finished_at = timezone.now()
        locked.save()
    pending = CohortJobChunk.objects.filter(job_id=chunk.job_id).exclude(status=CohortJobChunk.Status.DONE)
    if not pending.exists():
        cohort_job_finalize(job_id=chunk.job_id)
    return locked


AGGREGATE_FIELDS = ["feature", "unit", "shift", "day", "count", "total", "total_abs"]
SAMPLE_FIELDS = ["unit", "shift", "day", "prediction_id", "priority", "values", "shap"]


def _chunk_results(chunk: CohortJobChunk, names: list[str], ids, units, times, values, shap) -> tuple:
    """The chunk's partial aggregates and sample rows: its id, then AGGREGATE_FIELDS or SAMPLE_FIELDS."""
    shifts, days = cohort.local_slices(times, settings.HOSPITAL_TIME_ZONE)
    slices = cohort.slices_index(units, shifts, days)
    keys = list(zip(slices.units.tolist(), slices.shifts.tolist(), slices.days.astype(object), strict=True))
    labels = [(unit, shift, connection.ops.adapt_datefield_value(day)) for unit, shift, day in keys]
    count, total, total_abs = cohort.slice_sums(shap, slices)
    counts, totals, totals_abs = count.tolist(), total.T.tolist(), total_abs.T.tolist()
    partial = [
        (chunk.pk, name, *labels[g], counts[g], totals[j][g], totals_abs[j][g])
        for j, name in enumerate(names)
        for g in range(len(labels))
    ]
    # The sample is picked on ids and priorities; only the rows kept are turned into JSON.
    priority = cohort.priorities(ids)
    sample = cohort.bottom_k_rows(slices, priority, sample_size())
    sample = sample[_sample_kept(slices.index[sample], priority[sample], keys, chunk=chunk)]
    samples = zip(
        slices.index[sample].tolist(),
        ids[sample].tolist(),
        priority[sample].tolist(),
        cohort.json_float_rows(values[sample]),
        cohort.json_float_rows(shap[sample]),
        strict=True,
    )
    return partial, [(chunk.pk, *labels[g], *row) for g, *row in samples]


# Per worker process: the slices' k smallest priorities among the done chunks of the job it last ran a
# chunk of (the job's id and creation time, and k), and those chunks' ids.
_bounds: dict = {"job": None}


def _sample_kept(slice_index: np.ndarray, priority: np.ndarray, keys: list, *, chunk: CohortJobChunk):
    """Which rows of the chunk's sample (their slice numbers and priorities; slice i is keys[i], a
    (unit, shift, day)) can still be in their slice's final sample: a row is dropped when other
    chunks of the job already hold COHORT_SAMPLE_SIZE rows of its slice with a smaller priority (real
    predictions of the job, so the row is not among its smallest, whatever happens later). Early
    chunks store their whole bottom-k, later ones fewer and fewer, so stored samples and the
    finalisation stop growing with the cohort. A worker process reads each done chunk's sample once
    per job (ranking every other chunk's sample for each chunk took 0.1 s a chunk at 100k rows)."""
    job = (chunk.job_id, chunk.job.created_at, sample_size())
    if _bounds["job"] != job:
        _bounds.update(job=job, bounds=cohort.SliceBounds(sample_size()), seen=set())
    bounds, seen = _bounds["bounds"], _bounds["seen"]
    done = CohortJobChunk.objects.filter(job_id=chunk.job_id, status=CohortJobChunk.Status.DONE)
    new = set(done.exclude(pk=chunk.pk).values_list("pk", flat=True)) - seen
    if new:
        rows = CohortChunkSample.objects.filter(chunk_id__in=new).values_list(
            "unit", "shift", "day", "priority"
        )
        bounds.add([(unit, shift, day) for unit, shift, day, _ in rows], [p for *_, p in rows])
        seen |= new
    return priority <= bounds.bounds(keys)[slice_index]


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
    """Ready explanations of predictions newer than the job's chunks: add their stored SHAP values,
    EXPLAIN_BATCH at a time."""
    serving = serving_model(job.version)
    tail = (
        Explanation.objects.filter(
            prediction__model_version_id=job.version_id,
            status=Explanation.Status.READY,
            prediction_id__gt=job.max_prediction_id,
        )
        .select_related("prediction")
        .iterator(chunk_size=EXPLAIN_BATCH)
    )
    while batch := list(islice(tail, EXPLAIN_BATCH)):
        items = [
            (
                e.prediction,
                serving.encode(e.prediction.features),
                np.array([c["shap"] for c in e.contributions]),
            )
            for e in batch
        ]
        cohort_explanations_add(version_id=job.version_id, names=serving.feature_names, items=items)
