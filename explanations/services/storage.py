"""Storage of scored predictions: a chunk of items in a few multi-row statements.

Called inside the caller's transaction with items already validated, scored and checked against
the stored keys. Patients and encounters are created with ON CONFLICT DO NOTHING and read back,
so a concurrent request creating the same ones neither fails nor duplicates them; everything is
written in patient order (patients, then their predictions and alerts, then the current-score
pointers), so concurrent requests over the same patients take their locks in one order and cannot
deadlock.

What this module cannot decide from what it read before writing (a prediction key or an
encounter stored by a concurrent request meanwhile) surfaces as IntegrityError or `Raced`: the
caller rolls the chunk back, reads the stored keys again and retries.
"""

from dataclasses import dataclass, field

from django.db.models import Max
from django.utils import timezone
from rest_framework import status

from engine.tiers import raises_alert
from explanations.models import Explanation
from explanations.payloads import DEMOGRAPHICS
from patients.models import Alert, Encounter, Patient, Prediction
from sightline.api_errors import ApiError

from .current import patients_current_advance
from .validation import Item


class Raced(Exception):
    """A concurrent request stored something this chunk's checks did not see: retry the chunk."""


@dataclass
class Stored:
    """What a chunk wrote: each item's prediction or error (applied only once the chunk commits)."""

    predictions: dict[int, Prediction] = field(default_factory=dict)
    errors: dict[int, ApiError] = field(default_factory=dict)
    explanation_ids: list[int] = field(default_factory=list)


def _encounter_conflict(external_id: str) -> ApiError:
    return ApiError(
        code="encounter_conflict",
        detail=f"Encounter '{external_id}' belongs to another patient.",
        status_code=status.HTTP_409_CONFLICT,
        fields={"encounter_id": ["Already recorded for another patient."]},
    )


def _latest_items(items: list[Item]) -> dict[str, Item]:
    """Each patient's most recently scored item of the chunk (on a tie, the later one)."""
    latest: dict[str, Item] = {}
    for item in items:
        key = item.data["patient"]["id"]
        if key not in latest or item.data["scored_at"] >= latest[key].data["scored_at"]:
            latest[key] = item
    return latest


def _patient_fields(item: Item) -> dict:
    """Name, unit and bed, and each demographic the score gives (one it leaves out is kept)."""
    data = item.data["patient"]
    fields = {"display_name": data["display_name"], "unit": data["unit"], "bed": data["bed"]}
    for key in DEMOGRAPHICS:
        if data.get(key) is not None:
            fields[key] = data[key]
    if data.get("birth_date") is not None:
        fields["age"] = None  # a birth date supersedes an age given earlier
    elif data.get("age") is not None:
        fields["birth_date"] = None
    return fields


def _patients(items: list[Item], simulated: bool) -> dict[str, Patient]:
    """The chunk's patients by external id: created if new, and moved to the unit, bed and name
    of their most recent score (a back-filled old score does not move a patient back)."""
    latest = _latest_items(items)
    patients = {p.external_id: p for p in Patient.objects.filter(external_id__in=list(latest))}
    newest_scored = dict(
        Prediction.objects.filter(patient__in=list(patients.values()))
        .values("patient_id")
        .annotate(latest=Max("scored_at"))
        .values_list("patient_id", "latest")
    )
    for external_id in sorted(latest):
        patient = patients.get(external_id)
        item = latest[external_id]
        if patient is None:
            continue
        newest = newest_scored.get(patient.pk)
        if newest is not None and item.data["scored_at"] < newest:
            continue
        changed = {k: v for k, v in _patient_fields(item).items() if getattr(patient, k) != v}
        if changed:
            Patient.objects.filter(pk=patient.pk).update(**changed, updated_at=timezone.now())
            for key, value in changed.items():
                setattr(patient, key, value)
    missing = sorted(set(latest) - set(patients))
    if missing:
        Patient.objects.bulk_create(
            [Patient(external_id=e, simulated=simulated, **_patient_fields(latest[e])) for e in missing],
            ignore_conflicts=True,
        )
        # Read back: created here, or by a concurrent request a moment ago.
        patients.update({p.external_id: p for p in Patient.objects.filter(external_id__in=missing)})
    return patients


def _encounters_known(items: list[Item], errors: dict[int, ApiError]) -> dict[str, Encounter]:
    """The chunk's encounters already stored. One recorded for another patient, or a new one
    named by two patients of the chunk (the first keeps it), is that item's 409, decided before
    anything of the item is written."""
    wanted = {i.data["encounter_id"] for i in items if i.data.get("encounter_id")}
    if not wanted:
        return {}
    known = {
        e.external_id: e for e in Encounter.objects.filter(external_id__in=wanted).select_related("patient")
    }
    owners: dict[str, str] = {}
    for item in items:
        external_id, patient = item.data.get("encounter_id"), item.data["patient"]["id"]
        if not external_id:
            continue
        owner = (
            known[external_id].patient.external_id
            if external_id in known
            else owners.setdefault(external_id, patient)
        )
        if owner != patient:
            errors[item.index] = _encounter_conflict(external_id)
    return known


def _encounters_create(items: list[Item], patients: dict[str, Patient], known: dict[str, Encounter]) -> None:
    """Create the chunk's new encounters (adds them to `known`)."""
    owners: dict[str, Patient] = {}
    for item in items:
        external_id = item.data.get("encounter_id")
        if external_id and external_id not in known:
            owners.setdefault(external_id, patients[item.data["patient"]["id"]])
    if not owners:
        return
    created = sorted(owners)
    Encounter.objects.bulk_create(
        [Encounter(external_id=e, patient=owners[e]) for e in created], ignore_conflicts=True
    )
    for encounter in Encounter.objects.filter(external_id__in=created):
        if encounter.patient_id != owners[encounter.external_id].pk:
            raise Raced(f"encounter {encounter.external_id} was recorded concurrently for another patient")
        known[encounter.external_id] = encounter


def chunk_store(items: list[Item], *, source: str, simulated: bool) -> Stored:
    """Write the items' patients, encounters, predictions, explanations (pending), alerts and
    current-score pointers. Items must be in patient order. Returns what was written; the
    caller applies it to the items once the transaction commits."""
    stored = Stored()
    encounters = _encounters_known(items, stored.errors)
    writable = [i for i in items if i.index not in stored.errors]
    patients = _patients(writable, simulated)
    _encounters_create(writable, patients, encounters)
    predictions = Prediction.objects.bulk_create(
        [
            Prediction(
                registered_model=item.registered_model,
                model_version=item.version,
                external_id=item.data["external_id"],
                patient=patients[item.data["patient"]["id"]],
                encounter=encounters.get(item.data.get("encounter_id")),
                unit=item.data["patient"]["unit"],
                bed=item.data["patient"]["bed"],
                scored_at=item.data["scored_at"],
                risk=item.risk,
                margin=item.margin,
                tier=item.version.tier_for(item.risk),
                features=item.features,
                payload_sha256=item.sha256,
                source=source,
                simulated=simulated,
            )
            for item in writable
        ]
    )
    explanations = Explanation.objects.bulk_create([Explanation(prediction=p) for p in predictions])
    alerts = Alert.objects.bulk_create(
        [
            Alert(prediction=p, patient_id=p.patient_id, unit=p.unit, tier=p.tier, risk=p.risk)
            for p in predictions
            if raises_alert(p.tier)
        ]
    )
    # Last, once the alerts exist: the pointer copies each current score's alert with it.
    patients_current_advance(scores=[(p.patient_id, p.pk, p.scored_at) for p in predictions])
    by_prediction = {a.prediction_id: a for a in alerts}
    for item, prediction, explanation in zip(writable, predictions, explanations, strict=True):
        prediction.explanation = explanation
        alert = by_prediction.get(prediction.pk)
        if alert is not None:
            prediction.alert = alert
        else:
            Prediction.alert.related.set_cached_value(prediction, None)
        stored.predictions[item.index] = prediction
    stored.explanation_ids = [e.pk for e in explanations]
    return stored
