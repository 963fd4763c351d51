"""The audit row of every CDS Hooks call whose token verified (CONTRACT.md section 8): which EHR,
which EHR user and the Sightline user mapped from it, which patient (``context.patientId``, and
the Patient row when Sightline has one), and what the call came to (``cards=N``, a reason for no
card, or the refusal's status). A call refused at the token check (401) records nothing; a refused
call's row is written after its transaction has rolled back, so the refusal is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from patients import access
from patients.models import Patient, Prediction

from .cds_service import CdsCaller, CdsError


@dataclass
class CallAudit:
    """What one call's audit row says, filled in as the call is understood."""

    action: str
    caller: CdsCaller | None = None
    hook_user: str | None = None
    patient_id: str | None = None
    user: Any = None
    prediction: Prediction | None = None
    no_card: str = ""  # why a call answered without a card (e.g. "user not mapped")

    def note(self, outcome: str) -> str:
        return (
            f"EHR {self.caller.ehr.iss}; userId {self.hook_user or '-'}; "
            f"patientId {self.patient_id or '-'}; outcome {outcome}"
        )

    def write(self, request: HttpRequest, *, outcome: str, action: str | None = None) -> None:
        """The audit row (nothing when the token never verified: that call stores nothing)."""
        if self.caller is None:
            return
        patient = self.prediction.patient if self.prediction is not None else None
        if patient is None and self.patient_id:
            patient = Patient.objects.filter(external_id=self.patient_id).first()
        if self.user is not None:
            request.user = self.user
        access.audit_view(
            request,
            action=action or self.action,
            patient=patient,
            prediction=self.prediction,
            note=self.note(outcome),
        )

    def answered(self, request: HttpRequest, *, cards: int) -> None:
        reason = f" ({self.no_card})" if not cards and self.no_card else ""
        self.write(request, outcome=f"cards={cards}{reason}")

    def refused(self, request: HttpRequest, exc: CdsError) -> None:
        self.write(request, outcome=f"refused {exc.status} {exc.code}", action=f"{self.action}_refused")
