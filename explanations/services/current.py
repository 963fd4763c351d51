"""Each patient's current score: the pointer the worklist reads instead of searching every score."""

from collections.abc import Iterable
from datetime import datetime

from django.db import connection
from django.db.models import Case, Exists, OuterRef, Subquery, Value, When

from engine.decisions import DECIDED_STATES, LANE_ABSTAINS, LANE_DECIDED, LANE_OPEN
from patients.models import Alert, CurrentScore, Patient, Prediction

from ..models import Explanation

# Insert the patient's current score, or move it to this score if this one is later (later
# scored_at, or the same scored_at and a higher id: the worklist's order), with what the worklist
# filters and sorts on copied from the prediction and its alert (a new score's alert is new and not
# yet explained: it needs a decision, LANE_OPEN). One statement: concurrent ingest
# of the same patient serialises on the row, and PostgreSQL re-checks the condition against the
# row the other transaction committed, so the pointer and its copied values only move forward,
# together. Rows are written in patient order (the lock order of ingest). The WHERE clause also
# keeps SQLite from reading ON CONFLICT as part of the SELECT.
_ADVANCE = """
INSERT INTO {current}
    (patient_id, prediction_id, scored_at, unit, bed, tier, risk, alert_id, alerted_at, lane)
SELECT p.patient_id, p.id, p.scored_at, p.unit, p.bed, p.tier, p.risk, a.id, a.created_at, {open_lane}
FROM {prediction} p LEFT JOIN {alert} a ON a.prediction_id = p.id
WHERE p.id IN ({prediction_ids})
ORDER BY p.patient_id
ON CONFLICT (patient_id) DO UPDATE SET
    prediction_id = excluded.prediction_id, scored_at = excluded.scored_at, unit = excluded.unit,
    bed = excluded.bed, tier = excluded.tier, risk = excluded.risk, alert_id = excluded.alert_id,
    alerted_at = excluded.alerted_at, lane = excluded.lane
WHERE {current}.scored_at < excluded.scored_at
   OR ({current}.scored_at = excluded.scored_at AND {current}.prediction_id < excluded.prediction_id)
"""


def _advance(prediction_ids: str, params: list) -> None:
    quote = connection.ops.quote_name
    sql = _ADVANCE.format(
        current=quote(CurrentScore._meta.db_table),
        prediction=quote(Prediction._meta.db_table),
        alert=quote(Alert._meta.db_table),
        prediction_ids=prediction_ids,
        open_lane=int(LANE_OPEN),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def patients_current_advance(*, scores: Iterable[tuple[int, int, datetime]]) -> None:
    """Make each (patient id, prediction id, scored_at) its patient's current score unless a
    later score already is. One statement, rows in patient order (the lock order of ingest);
    several scores of one patient are reduced to the latest first (an upsert may touch a row once).

    The scores' predictions, and their alerts if any, must already be stored: the statement copies
    their unit, bed, tier, risk and alert."""
    latest: dict[int, tuple[datetime, int]] = {}
    for patient_id, prediction_id, scored_at in scores:
        if patient_id not in latest or (scored_at, prediction_id) > latest[patient_id]:
            latest[patient_id] = (scored_at, prediction_id)
    if not latest:
        return
    prediction_ids = [prediction_id for _scored_at, prediction_id in latest.values()]
    _advance(", ".join(["%s"] * len(prediction_ids)), prediction_ids)


def patient_current_advance(*, patient_id: int, prediction_id: int, scored_at: datetime) -> None:
    """Make this score the patient's current one unless a later score already is."""
    patients_current_advance(scores=[(patient_id, prediction_id, scored_at)])


def patients_current_refresh(*, patient_ids: Iterable[int] | None = None) -> None:
    """Bring the current scores up to date with the stored predictions and alerts, in one
    statement, for writers that bypass ingest (bulk-created synthetic cohorts, benchmarks): their
    alerts, if any, must be stored first. None: every patient."""
    latest = Prediction.objects.filter(patient=OuterRef("pk")).order_by("-scored_at", "-id")
    patients = (
        Patient.objects.all() if patient_ids is None else Patient.objects.filter(pk__in=list(patient_ids))
    )
    select, params = (
        patients.annotate(latest_id=Subquery(latest.values("id")[:1]))
        .filter(latest_id__isnull=False)
        .values_list("latest_id")
        .query.sql_with_params()
    )
    _advance(select, list(params))
    current_lanes_refresh(
        scores=CurrentScore.objects.all()
        if patient_ids is None
        else CurrentScore.objects.filter(patient_id__in=list(patient_ids))
    )


def current_lanes_refresh(*, scores=None, alert=None, prediction_ids: Iterable[int] | None = None) -> int:
    """Put each listed current alert in its worklist lane (engine.decisions: decided when its state
    is one of DECIDED_STATES, else abstaining when its ready explanation abstains, else needing a
    decision), read in the same statement from the alert's state and its explanation: the current
    score of `alert`, of `prediction_ids`, or the current scores `scores`. Returns the rows written."""
    if scores is None:
        scores = CurrentScore.objects.none()
    if alert is not None:
        scores = CurrentScore.objects.filter(alert=alert)
    if prediction_ids is not None:
        scores = CurrentScore.objects.filter(prediction_id__in=list(prediction_ids))
    decided = Alert.objects.filter(pk=OuterRef("alert_id"), state__in=DECIDED_STATES)
    abstains = Explanation.objects.filter(
        prediction_id=OuterRef("prediction_id"), status=Explanation.Status.READY, abstain=True
    )
    return scores.filter(alert__isnull=False).update(
        lane=Case(
            When(Exists(decided), then=Value(LANE_DECIDED)),
            When(Exists(abstains), then=Value(LANE_ABSTAINS)),
            default=Value(LANE_OPEN),
        )
    )
