"""Outcomes (CONTRACT.md section 3): labels for calibration monitoring and outcome studies."""

from datetime import datetime

from django.db import IntegrityError, transaction
from rest_framework import status

from common.timestamps import iso_utc
from patients.models import Encounter, Outcome
from sightline.api_errors import ApiError


def outcome_record(*, encounter_id: str, outcome: bool, occurred_at: datetime | None) -> tuple[Outcome, bool]:
    """Store an encounter's outcome once; the same outcome again is a no-op, another is 409."""
    encounter = Encounter.objects.filter(external_id=encounter_id).first()
    if encounter is None:
        raise ApiError(
            code="unknown_encounter",
            detail=f"No prediction has been posted for encounter '{encounter_id}'.",
            status_code=status.HTTP_404_NOT_FOUND,
            fields={"encounter_id": [f"Unknown encounter '{encounter_id}'."]},
        )
    try:
        with transaction.atomic():
            return Outcome.objects.create(encounter=encounter, outcome=outcome, occurred_at=occurred_at), True
    except IntegrityError:
        existing = Outcome.objects.select_related("encounter").get(encounter=encounter)
    if existing.outcome != outcome or existing.occurred_at != occurred_at:
        raise ApiError(
            code="outcome_conflict",
            detail=(
                f"Encounter '{encounter_id}' already has outcome {existing.outcome} "
                f"(occurred_at {iso_utc(existing.occurred_at)}); outcomes are recorded once."
            ),
            status_code=status.HTTP_409_CONFLICT,
            fields={"encounter_id": ["Already has a different outcome."]},
        )
    return existing, False
