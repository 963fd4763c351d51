"""A CDS Hooks 2.0 ``patient-view`` call: who is calling (the EHR's JWT, the mapped practitioner),
which Sightline patient it is, and which score the card is made from.

The card is made from the patient's current score of the service's model, read through the one
access guard as the mapped clinician (another unit's patient gets no card). With no score and a
prefetch carrying the model's inputs, the prefetch is scored through the ``POST /fhir/`` pipeline
(interop.cds_prefetch). With neither, there is nothing to answer from: 412, as CDS Hooks 2.0 asks
of a service that cannot get the FHIR data it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from accounts import permissions
from patients import access
from patients.models import CurrentScore, Prediction

from .ehr_jwt import ASYMMETRIC_ALGORITHMS, VerifiedCall, bearer_token, verify_cds_jwt
from .ehr_registry import IssuerKeys, jti_seen
from .models import PractitionerMapping, RegisteredEhr


class CdsError(Exception):
    """A call answered with the section-7 error body (never a 500, nothing stored)."""

    def __init__(self, status: int, code: str, detail: str, fields: dict[str, list[str]] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.fields = status, code, detail, fields or {}

    def as_error_body(self) -> dict:
        return {"error": self.code, "detail": self.detail, "fields": self.fields}


def invalid(field: str, message: str, status: int = 400) -> CdsError:
    return CdsError(status, "invalid", f"{field}: {message}", {field: [message]})


@dataclass
class CdsCaller:
    ehr: RegisteredEhr
    token: VerifiedCall


FEEDBACK_SUFFIX = "/feedback"


def audiences(base: str, path: str) -> list[str]:
    """The ``aud`` a call's token may carry: the URL called, and for feedback also its service's URL
    (CDS Hooks 2.0 says the audience is "the CDS Service endpoint"; EHRs read that either way)."""
    urls = [base + path]
    if path.endswith(FEEDBACK_SUFFIX):
        urls.append(base + path.removesuffix(FEEDBACK_SUFFIX))
    return urls


def caller_verify(request: HttpRequest, *, base: str) -> CdsCaller:
    """The EHR whose JWT this is, checked against the URL called (``aud``); EhrAuthError otherwise.
    The token's jti is recorded last, so a refused token stores nothing."""
    keys = IssuerKeys()
    token = verify_cds_jwt(
        bearer_token(request.headers.get("Authorization")),
        jwks_for_issuer=keys.jwks,
        algorithms_for_issuer=keys.algorithms,
        audience=audiences(base, request.path),
        seen_jti=jti_seen,
        leeway=settings.CDS_JWT_LEEWAY_SECONDS,
        max_lifetime=settings.CDS_JWT_MAX_LIFETIME_SECONDS,
        algorithms=tuple(ASYMMETRIC_ALGORITHMS),
    )
    return CdsCaller(ehr=keys.ehr, token=token)


def relative_reference(reference: str) -> str:
    """ "https://ehr/fhir/Practitioner/123" or "Practitioner/123" -> "Practitioner/123"."""
    parts = [p for p in reference.split("?")[0].split("/") if p]
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference


def practitioner_user(ehr: RegisteredEhr, fhir_user: str | None):
    """The Sightline user an admin mapped this EHR user to, if that account may act through an EHR
    (accounts.permissions.may_act_through_ehr: active, never an admin); None otherwise."""
    if not fhir_user:
        return None
    mapping = (
        PractitionerMapping.objects.filter(ehr=ehr, fhir_user=relative_reference(fhir_user))
        .select_related("user", "user__profile")
        .first()
    )
    if mapping is None or not permissions.may_act_through_ehr(mapping.user):
        return None
    return mapping.user


@dataclass
class HookRequest:
    hook: str
    hook_instance: str
    patient_id: str
    user_id: str | None
    encounter_id: str | None
    prefetch: dict[str, Any]


def _string(value: Any, field: str, *, required: bool = True, limit: int = 200) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid(field, "Required: a non-empty string.")
    if len(value) > limit:
        raise invalid(field, f"Longer than {limit} characters.")
    return value.strip()


def hook_request_parse(body: Any, *, expected_hook: str) -> HookRequest:
    """The fields of a CDS Hooks 2.0 request this service reads, each checked and named when wrong."""
    if not isinstance(body, dict):
        raise invalid("body", "A CDS Hooks request is a JSON object.")
    hook = _string(body.get("hook"), "hook")
    if hook != expected_hook:
        raise invalid("hook", f"This service answers the {expected_hook!r} hook, not {hook!r}.")
    context = body.get("context")
    if not isinstance(context, dict):
        raise invalid("context", "Required: an object with patientId (and userId).")
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        raise invalid("prefetch", "Must be an object of prefetched resources.")
    return HookRequest(
        hook=hook,
        hook_instance=_string(body.get("hookInstance"), "hookInstance", limit=100),
        patient_id=_string(context.get("patientId"), "context.patientId", limit=100),
        user_id=_string(context.get("userId"), "context.userId", required=False, limit=300),
        encounter_id=_string(context.get("encounterId"), "context.encounterId", required=False, limit=100),
        prefetch={k: v for k, v in (prefetch or {}).items() if v is not None},
    )


def current_prediction(user, *, patient_id: str, registered_model_id: int) -> Prediction | None:
    """The patient's current score of this model, as the clinician may see it (patients.access)."""
    if user is None:
        return None
    current = (
        access.current_scores_for_user(user)
        .filter(patient__external_id=patient_id, prediction__registered_model_id=registered_model_id)
        .select_related("prediction__patient", "prediction__model_version__registered_model")
        .first()
    )
    return current.prediction if current is not None else None


def scored_anywhere(*, patient_id: str, registered_model_id: int) -> bool:
    """Whether the patient has a current score of this model in any unit: then a prefetch is not
    scored for a clinician who may not see it (another unit's patient gets no card)."""
    return CurrentScore.objects.filter(
        patient__external_id=patient_id, prediction__registered_model_id=registered_model_id
    ).exists()


def may_see_cards(user) -> bool:
    return user is not None and permissions.is_person(user) and permissions.visible_units(user) != []
