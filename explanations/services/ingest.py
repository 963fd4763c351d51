"""Prediction ingest (CONTRACT.md section 2): validate, score, store, queue the explanation."""

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Max, OuterRef, Subquery
from django.utils import timezone
from rest_framework import status

from explanations.models import Alert, CurrentScore, Encounter, Explanation, Patient, Prediction
from explanations.serializers import PredictionInSerializer
from sightline.api_errors import ApiError

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

ALERT_TIERS = ("medium", "high")
# Rows per transaction in bulk ingest: bounded lock time, one commit per chunk.
BULK_CHUNK = 500


# --- the current score per patient -------------------------------------------------------------

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


def patient_current_advance(*, patient_id: int, prediction_id: int, scored_at: datetime) -> None:
    """Make this score the patient's current one unless a later score already is."""
    table = connection.ops.quote_name(CurrentScore._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            _ADVANCE.format(table=table, rows="VALUES (%s, %s, %s)"),
            [patient_id, prediction_id, connection.ops.adapt_datetimefield_value(scored_at)],
        )


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


# --- storage -----------------------------------------------------------------------------------


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


def _replay_check(item: Item, stored: dict[str, tuple[int, str]]) -> None:
    """Answer a key that is already stored: the same body is a replay, another body a conflict."""
    hit = stored.get(item.data["external_id"])
    if hit is None:
        return
    prediction_id, sha256 = hit
    if sha256 != item.sha256:
        item.error = _conflict(item)
        return
    item.result = IngestResult(prediction=_prediction_load(prediction_id), created=False)


def _prediction_load(prediction_id: int) -> Prediction:
    return Prediction.objects.select_related("explanation", "alert").get(pk=prediction_id)


class _People:
    """Patients, their latest scoring time and encounters of a request, loaded in three queries.

    A patient or encounter not found here is created without another look-up; if a concurrent
    request created it meanwhile, the item's savepoint rolls back, `forget` marks it stale and
    the item is stored again against the row that now exists.
    """

    def __init__(self, items: Iterable[Item]) -> None:
        items = list(items)
        patient_ids = {i.data["patient"]["id"] for i in items}
        encounter_ids = {i.data["encounter_id"] for i in items if i.data.get("encounter_id")}
        self.patients = {p.external_id: p for p in Patient.objects.filter(external_id__in=patient_ids)}
        latest = (
            Prediction.objects.filter(patient__in=self.patients.values())
            .values("patient_id")
            .annotate(latest=Max("scored_at"))
        )
        self.latest = {row["patient_id"]: row["latest"] for row in latest}
        self.encounters = {e.external_id: e for e in Encounter.objects.filter(external_id__in=encounter_ids)}
        self.stale: set[str] = set()

    def patient_upsert(self, item: Item, simulated: bool) -> Patient:
        data = item.data["patient"]
        latest = {"display_name": data["display_name"], "unit": data["unit"], "bed": data["bed"]}
        patient = self.patients.get(data["id"])
        if patient is None and ("patient", data["id"]) in self.stale:
            patient = Patient.objects.filter(external_id=data["id"]).first()
        if patient is None:
            return Patient.objects.create(external_id=data["id"], simulated=simulated, **latest)
        # Unit, bed and name follow the most recent scoring, so a back-filled old prediction
        # does not move a patient back to the unit they left.
        newest = self.latest.get(patient.pk)
        if newest is None or item.data["scored_at"] >= newest:
            changed = {k: v for k, v in latest.items() if getattr(patient, k) != v}
            if changed:
                Patient.objects.filter(pk=patient.pk).update(**changed, updated_at=timezone.now())
                for key, value in changed.items():
                    setattr(patient, key, value)
        return patient

    def encounter_upsert(self, item: Item, patient: Patient) -> Encounter | None:
        external_id = item.data.get("encounter_id")
        if not external_id:
            return None
        encounter = self.encounters.get(external_id)
        if encounter is None and ("encounter", external_id) in self.stale:
            encounter = Encounter.objects.filter(external_id=external_id).first()
        if encounter is None:
            return Encounter.objects.create(external_id=external_id, patient=patient)
        if encounter.patient_id != patient.pk:
            raise ApiError(
                code="encounter_conflict",
                detail=f"Encounter '{external_id}' belongs to another patient.",
                status_code=status.HTTP_409_CONFLICT,
                fields={"encounter_id": ["Already recorded for another patient."]},
            )
        return encounter

    def forget(self, item: Item) -> None:
        """Drop what a rolled-back item may have changed in memory; read it again when needed."""
        patient_id, encounter_id = item.data["patient"]["id"], item.data.get("encounter_id")
        self.patients.pop(patient_id, None)
        self.stale.add(("patient", patient_id))
        if encounter_id:
            self.encounters.pop(encounter_id, None)
            self.stale.add(("encounter", encounter_id))

    def stored(self, patient: Patient, encounter: Encounter | None, scored_at: datetime) -> None:
        """Remember what this request wrote, for the items after it."""
        self.patients[patient.external_id] = patient
        if encounter is not None:
            self.encounters[encounter.external_id] = encounter
        newest = self.latest.get(patient.pk)
        if newest is None or scored_at > newest:
            self.latest[patient.pk] = scored_at


def _write(item: Item, people: _People, *, source: str, simulated: bool) -> Prediction:
    data = item.data
    with transaction.atomic():
        patient = people.patient_upsert(item, simulated)
        encounter = people.encounter_upsert(item, patient)
        prediction = Prediction.objects.create(
            registered_model=item.registered_model,
            model_version=item.version,
            external_id=data["external_id"],
            patient=patient,
            encounter=encounter,
            unit=data["patient"]["unit"],
            bed=data["patient"]["bed"],
            scored_at=data["scored_at"],
            risk=item.risk,
            margin=item.margin,
            tier=item.version.tier_for(item.risk),
            features=item.features,
            payload_sha256=item.sha256,
            source=source,
            simulated=simulated,
        )
        patient_current_advance(
            patient_id=patient.pk, prediction_id=prediction.pk, scored_at=prediction.scored_at
        )
        prediction.explanation = Explanation.objects.create(prediction=prediction)
        if prediction.tier in ALERT_TIERS:
            prediction.alert = Alert.objects.create(
                prediction=prediction,
                patient=patient,
                unit=prediction.unit,
                tier=prediction.tier,
                risk=item.risk,
            )
    people.stored(patient, encounter, data["scored_at"])
    return prediction


def _store(item: Item, people: _People, *, source: str, simulated: bool) -> list[int]:
    """Write one scored item inside a savepoint; return the ids of explanations to enqueue."""
    external_id = item.data["external_id"]
    for attempt in (1, 2):
        try:
            prediction = _write(item, people, source=source, simulated=simulated)
        except ApiError as exc:
            people.forget(item)
            item.error = exc
            return []
        except IntegrityError:
            people.forget(item)
            # Another request stored the same key first (or an earlier item of this one did).
            hit = (
                Prediction.objects.filter(registered_model=item.registered_model, external_id=external_id)
                .values_list("pk", "payload_sha256")
                .first()
            )
            if hit is not None:
                _replay_check(item, {external_id: hit})
                return []
            if attempt == 2:
                raise
            continue  # a patient or encounter created concurrently: store against it
        item.result = IngestResult(prediction=prediction, created=True)
        return [prediction.explanation.pk]
    return []


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
    serializer = PredictionInSerializer()
    for item in items:
        shape_check(item, serializer)
        if item.error is None:
            model_resolve(item, registry)

    # Replays and conflicts are answered from what is stored, before anything is computed.
    keys: dict[int, list[str]] = {}
    for item in items:
        if item.error is None:
            keys.setdefault(item.registered_model.pk, []).append(item.data["external_id"])
    stored: dict[int, dict[str, tuple[int, str]]] = {}
    for model_id, external_ids in keys.items():
        rows = Prediction.objects.filter(registered_model_id=model_id, external_id__in=external_ids)
        stored[model_id] = {
            e: (pk, sha) for pk, e, sha in rows.values_list("pk", "external_id", "payload_sha256")
        }
    for item in items:
        if item.error is None:
            _replay_check(item, stored[item.registered_model.pk])
            if item.error is None and item.result is None:
                version_resolve(item, registry)
            if item.error is None and item.result is None:
                features_check(item)

    score([i for i in items if i.error is None and i.result is None])

    # Stored in patient then encounter order, so concurrent requests for the same patients take
    # their row and unique-key locks in one order and cannot deadlock each other.
    pending = sorted(
        (i for i in items if i.error is None and i.result is None),
        key=lambda i: (i.data["patient"]["id"], i.data.get("encounter_id") or ""),
    )
    for start in range(0, len(pending), BULK_CHUNK):
        chunk = pending[start : start + BULK_CHUNK]
        with transaction.atomic():
            people = _People(chunk)
            explanation_ids: list[int] = []
            for item in chunk:
                explanation_ids += _store(item, people, source=source, simulated=simulated)
            if explanation_ids:
                transaction.on_commit(lambda ids=explanation_ids: explanations_enqueue(ids))
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
