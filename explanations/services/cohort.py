"""Cohort SHAP aggregates: updated as explanations become ready, and recomputed by a chunked job.

What the aggregates count: each prediction of a version once, with SHAP values that add up to its
output: its explanation's (abstained ones included: their SHAP values are valid, the abstention
concerns the risk shown), or a recompute job's.

Incremental: `cohort_explanations_add` runs in the transaction that marks a batch of explanations
ready, with only the ones whose status that transaction changes, so each explanation is counted once.

Recompute (`cohort_job_create` + `cohort_job_run`): the version's predictions up to the newest at
creation are cut into chunks of consecutive ids (the database returns only the boundaries); each
chunk task streams its rows from the database, explains them in batches and replaces its own
partial aggregates and sample (keyed by chunk), so a chunk run twice counts once. The job row and
its chunk rows record progress; running the job again dispatches only the chunks not done (a worker
killed mid-way loses at most the chunk it held). When the last chunk is done the job is finalised:
the version's aggregates and samples are replaced by the sum of the chunks', plus the ready
explanations of later predictions. From then on an explanation of a prediction the job covered is
not added again.

Memory and time per row: a chunk holds at most its own rows; it stores the sample rows that the
chunks already done do not outrank (so stored samples stop growing with the cohort), and the
finalisation sums and ranks in SQL. Around SHAP a chunk costs about 0.2 ms of CPU per row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import reduce
from operator import or_

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Q, Sum, Window
from django.db.models.functions import RowNumber

from engine import cohort
from explanations.models import (
    CohortAggregate,
    CohortJob,
    CohortJobChunk,
    CohortSample,
)
from models_registry.models import ModelVersion
from patients.models import Prediction

log = logging.getLogger(__name__)

# Rows explained per SHAP call inside a chunk (bounded memory: rows x background x features).
EXPLAIN_BATCH = 256


def sample_size() -> int:
    return int(getattr(settings, "COHORT_SAMPLE_SIZE", 200))


def default_chunk_size() -> int:
    return int(getattr(settings, "COHORT_CHUNK_SIZE", 2000))


def _slice(prediction_scored_at) -> tuple[str, object]:
    return cohort.slice_of(prediction_scored_at, settings.HOSPITAL_TIME_ZONE)


def _aggregates_add(version_id: int, rows: list[tuple]) -> None:
    """Add (feature, unit, shift, day, count, total, total_abs) rows to the live table, in one
    INSERT ... ON CONFLICT DO UPDATE (adds, never replaces). One statement rather than one per
    feature: this runs in the transaction of every explanation, and the workers take the rows'
    locks in the same (feature) order."""
    if not rows:
        return
    table = CohortAggregate._meta.db_table
    # SQLite caps a statement's parameters (999 before 3.32): as many statements as that takes, in
    # the rows' order; PostgreSQL has no such cap (one statement).
    cap = connection.features.max_query_params
    per_statement = max(1, cap // 8) if cap else len(rows)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            part = rows[start : start + per_statement]
            values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(part))
            sql = (
                f"INSERT INTO {table} (version_id, feature, unit, shift, day, count, total, total_abs) "  # noqa: S608
                f"VALUES {values} "
                "ON CONFLICT (version_id, feature, unit, shift, day) DO UPDATE SET "
                f"count = {table}.count + EXCLUDED.count, total = {table}.total + EXCLUDED.total, "
                f"total_abs = {table}.total_abs + EXCLUDED.total_abs"
            )
            cursor.execute(sql, [value for row in part for value in (version_id, *row)])


def _samples_add(version_id: int, rows: list[tuple]) -> None:
    """Keep each (prediction_id, unit, shift, day, values, shap) in its slice's sample if it is
    among the COHORT_SAMPLE_SIZE smallest priorities. A few statements for the whole batch: the
    slices' k-th priorities in one query, the candidates in one insert, and the rows pushed out of
    the bottom-k in one delete."""
    if not rows:
        return
    k = sample_size()
    slices = {(unit, shift, day) for _id, unit, shift, day, _v, _s in rows}
    in_slices = CohortSample.objects.filter(version_id=version_id).filter(
        reduce(or_, (Q(unit=unit, shift=shift, day=day) for unit, shift, day in sorted(slices)))
    )
    kth = _kth_priorities(in_slices, k)
    candidates = []
    for prediction_id, unit, shift, day, values, shap in rows:
        p = cohort.priority(prediction_id)
        bound = kth.get((unit, shift, day))
        if bound is not None and p >= bound:
            continue
        candidates.append(
            CohortSample(
                version_id=version_id,
                unit=unit,
                shift=shift,
                day=day,
                prediction_id=prediction_id,
                priority=p,
                values=cohort.json_floats(values),
                shap=[float(v) for v in shap],
            )
        )
    if not candidates:
        return
    CohortSample.objects.bulk_create(candidates, ignore_conflicts=True)
    overflow = _kth_priorities(in_slices, k)
    if overflow:
        in_slices.filter(
            reduce(
                or_,
                (
                    Q(unit=unit, shift=shift, day=day, priority__gt=bound)
                    for (unit, shift, day), bound in sorted(overflow.items())
                ),
            )
        ).delete()


def _kth_priorities(samples, k: int) -> dict[tuple, float]:
    """{(unit, shift, day): the k-th smallest priority} of the slices holding at least k rows."""
    ranked = samples.annotate(
        rank=Window(
            RowNumber(),
            partition_by=[F("unit"), F("shift"), F("day")],
            order_by=[F("priority").asc(), F("prediction_id").asc()],
        )
    ).filter(rank=k)
    return {
        (unit, shift, day): p
        for unit, shift, day, p in ranked.values_list("unit", "shift", "day", "priority")
    }


def cohort_explanations_add(*, version_id: int, names: list[str], items: Sequence[tuple]) -> int:
    """Add ready explanations of one version, each (prediction, encoded values, SHAP values), to
    their slices' aggregates and samples; return how many were added. Call inside the transaction
    that marks them ready, with only the ones whose update changed their status. A prediction a
    recompute job already counted is left out.

    One aggregate statement for the batch: values are summed per (feature, unit, shift, day) first
    (an upsert may touch a row once) and written in key order, the order every writer locks in."""
    covered_up_to = CohortJob.objects.filter(
        version_id=version_id, status__in=[CohortJob.Status.FINALIZING, CohortJob.Status.DONE]
    ).aggregate(up_to=Max("max_prediction_id"))["up_to"]
    sums: dict[tuple, list] = {}
    samples = []
    for prediction, values, shap in items:
        if covered_up_to is not None and prediction.pk <= covered_up_to:
            continue  # a recompute job already counted this prediction
        shift, day = _slice(prediction.scored_at)
        for name, v in zip(names, shap, strict=True):
            total = sums.setdefault((name, prediction.unit, shift, day), [0, 0.0, 0.0])
            total[0] += 1
            total[1] += float(v)
            total[2] += abs(float(v))
        samples.append((prediction.pk, prediction.unit, shift, day, values, shap))
    _aggregates_add(version_id, [(*key, *total) for key, total in sorted(sums.items())])
    _samples_add(version_id, samples)
    return len(samples)


def cohort_explanation_add(
    *, prediction: Prediction, names: list[str], values: np.ndarray, shap: np.ndarray
) -> None:
    """Add one ready explanation to its slice's aggregates and sample (see cohort_explanations_add)."""
    cohort_explanations_add(
        version_id=prediction.model_version_id, names=names, items=[(prediction, values, shap)]
    )


# --- the recompute job -------------------------------------------------------------------------


def cohort_job_create(*, version: ModelVersion, chunk_size: int | None = None) -> CohortJob:
    """A job over the version's predictions, cut into chunks of `chunk_size` consecutive ids.

    The database numbers the version's predictions in id order and returns one row per chunk
    (its first and last id and its row count): a million predictions come back as 500 rows, and
    one statement sees one snapshot, so the chunks cover every prediction up to the newest once.
    """
    chunk_size = chunk_size or default_chunk_size()
    with transaction.atomic():
        job = CohortJob.objects.create(version=version, chunk_size=chunk_size)
        bounds = _chunk_bounds(version_id=version.pk, chunk_size=chunk_size)
        CohortJobChunk.objects.bulk_create(
            [
                CohortJobChunk(job=job, index=index, first_id=first, last_id=last)
                for index, first, last, _rows in bounds
            ],
            batch_size=1000,
        )
        job.chunks_total = len(bounds)
        job.rows_total = sum(rows for *_, rows in bounds)
        job.max_prediction_id = bounds[-1][2] if bounds else 0
        job.save(update_fields=["chunks_total", "rows_total", "max_prediction_id"])
    return job


def _chunk_bounds(*, version_id: int, chunk_size: int) -> list[tuple[int, int, int, int]]:
    """(index, first id, last id, rows) of each chunk of the version's predictions, in id order.

    A window function in a subquery, the same SQL on PostgreSQL and SQLite (3.25+): the ids are
    numbered and grouped in the database, and only the boundaries come back.
    """
    quote = connection.ops.quote_name
    table = quote(Prediction._meta.db_table)
    pk = quote(Prediction._meta.pk.column)
    version = quote(Prediction._meta.get_field("model_version").column)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT chunk, MIN(pk), MAX(pk), COUNT(*) FROM ("  # noqa: S608
            f"SELECT {pk} AS pk, (ROW_NUMBER() OVER (ORDER BY {pk}) - 1) / %s AS chunk "
            f"FROM {table} WHERE {version} = %s) numbered GROUP BY chunk ORDER BY chunk",
            [chunk_size, version_id],
        )
        return [(int(index), int(first), int(last), int(rows)) for index, first, last, rows in cursor]


def cohort_job_progress(job: CohortJob) -> dict:
    """`GET /api/v1/jobs/{id}/` body."""
    chunks = CohortJobChunk.objects.filter(job=job)
    done = chunks.filter(status=CohortJobChunk.Status.DONE).aggregate(
        rows=Sum("rows"), failed=Sum("rows_failed")
    )
    chunks_done = chunks.filter(status=CohortJobChunk.Status.DONE).count()
    return {
        "id": job.pk,
        "kind": "cohort_recompute",
        "model": {"name": job.version.registered_model.name, "version": job.version.version},
        "status": job.status,
        "chunks_total": job.chunks_total,
        "chunks_done": chunks_done,
        "rows_total": job.rows_total,
        "rows_done": done["rows"] or 0,
        "rows_failed": done["failed"] or 0,
        "progress": chunks_done / job.chunks_total if job.chunks_total else 1.0,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "error": job.error or None,
    }
