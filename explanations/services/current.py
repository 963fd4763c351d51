"""Each patient's current score: the pointer the worklist reads instead of searching every score."""

from collections.abc import Iterable
from datetime import datetime

from django.db import connection
from django.db.models import OuterRef, Subquery

from explanations.models import CurrentScore, Patient, Prediction

# Insert the patient's current score, or move it to this score if this one is later (later
# scored_at, or the same scored_at and a higher id: the worklist's order). One statement:
# concurrent ingest of the same patient serialises on the row, and PostgreSQL re-checks the
# condition against the row the other transaction committed, so the pointer only moves forward.
_ADVANCE = """
INSERT INTO {table} (patient_id, prediction_id, scored_at) {rows}
ON CONFLICT (patient_id) DO UPDATE SET prediction_id = excluded.prediction_id, scored_at = excluded.scored_at
WHERE {table}.scored_at < excluded.scored_at
   OR ({table}.scored_at = excluded.scored_at AND {table}.prediction_id < excluded.prediction_id)
"""


def patients_current_advance(*, scores: Iterable[tuple[int, int, datetime]]) -> None:
    """Make each (patient id, prediction id, scored_at) its patient's current score unless a
    later score already is. One statement, rows in patient order (the lock order of ingest);
    several scores of one patient are reduced to the latest first (an upsert may touch a row once).
    """
    latest: dict[int, tuple[datetime, int]] = {}
    for patient_id, prediction_id, scored_at in scores:
        if patient_id not in latest or (scored_at, prediction_id) > latest[patient_id]:
            latest[patient_id] = (scored_at, prediction_id)
    if not latest:
        return
    params: list = []
    for patient_id in sorted(latest):
        scored_at, prediction_id = latest[patient_id]
        params += [patient_id, prediction_id, connection.ops.adapt_datetimefield_value(scored_at)]
    table = connection.ops.quote_name(CurrentScore._meta.db_table)
    values = "VALUES " + ", ".join(["(%s, %s, %s)"] * len(latest))
    with connection.cursor() as cursor:
        cursor.execute(_ADVANCE.format(table=table, rows=values), params)


def patient_current_advance(*, patient_id: int, prediction_id: int, scored_at: datetime) -> None:
    """Make this score the patient's current one unless a later score already is."""
    patients_current_advance(scores=[(patient_id, prediction_id, scored_at)])


def patients_current_refresh(*, patient_ids: Iterable[int] | None = None) -> None:
    """Bring the current scores up to date with the stored predictions, in one statement, for
    writers that bypass ingest (bulk-created synthetic cohorts, benchmarks). None: every patient."""
    latest = Prediction.objects.filter(patient=OuterRef("pk")).order_by("-scored_at", "-id")
    patients = (
        Patient.objects.all() if patient_ids is None else Patient.objects.filter(pk__in=list(patient_ids))
    )
    select, params = (
        patients.annotate(
            latest_id=Subquery(latest.values("id")[:1]), latest_at=Subquery(latest.values("scored_at")[:1])
        )
        .filter(latest_id__isnull=False)
        .values_list("pk", "latest_id", "latest_at")
        .query.sql_with_params()
    )
    table = connection.ops.quote_name(CurrentScore._meta.db_table)
    with connection.cursor() as cursor:
        # "WHERE true" keeps SQLite from reading ON CONFLICT as part of the SELECT.
        rows = f"SELECT * FROM ({select}) AS latest WHERE true"  # noqa: S608 - the ORM's own SQL
        cursor.execute(_ADVANCE.format(table=table, rows=rows), params)
