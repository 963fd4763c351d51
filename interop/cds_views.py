"""CDS Hooks 2.0 endpoints (CONTRACT.md section 8): discovery, the patient-view service, feedback.

Thin: verify the EHR's JWT first (any fault: 401 with the section-7 body, nothing stored), parse,
call interop's services, answer JSON. Each call runs in one transaction with the token's jti, so a
call that fails stores nothing, its jti included, but its audit row (interop.cds_audit): every call
whose token verified is audited with the EHR, the user, the patient and the outcome.
"""

from __future__ import annotations

import logging
from functools import wraps

from django.db import transaction
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from clinician_ui.selectors import score_detail_get
from clinician_ui.services import alert_view_record
from explanations.models import Explanation
from explanations.services import explanation_compute
from patients import access
from patients.models import Alert, Prediction
from sightline.parsers import strict_loads

from . import cds_discovery
from .cds_audit import CallAudit
from .cds_cards import card_uuid, risk_card
from .cds_feedback import feedback_record
from .cds_prefetch import prefetch_score
from .cds_service import (
    CdsCaller,
    CdsError,
    HookRequest,
    caller_verify,
    current_prediction,
    hook_request_parse,
    may_see_cards,
    practitioner_user,
    scored_anywhere,
)
from .ehr_jwt import EhrAuthError
from .models import CdsCard, CdsCardShown, CdsServiceSetting
from .public_url import NOT_CONFIGURED, public_base_url

log = logging.getLogger(__name__)


def _error(exc: CdsError | EhrAuthError) -> JsonResponse:
    response = JsonResponse(exc.as_error_body(), status=exc.status)
    if exc.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="cds-services", error="invalid_token"'
        log.warning("CDS Hooks call refused: %s", exc)
    return response


def _only(method: str):
    """Like require_GET / require_POST, but the refusal is the section-7 JSON body (405 with Allow)."""

    def decorate(view):
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            if request.method != method:
                response = JsonResponse(
                    CdsError(405, "method_not_allowed", f"Use {method} at this address.").as_error_body(),
                    status=405,
                )
                response["Allow"] = method
                return response
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def _body(request: HttpRequest):
    if request.content_type != "application/json":
        raise CdsError(415, "unsupported_media_type", "Send the request as application/json.")
    try:
        return strict_loads(request.body.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise CdsError(400, "invalid", f"The body is not valid JSON: {exc}", {"body": [str(exc)]}) from None


@_only("GET")
def discovery(request: HttpRequest) -> JsonResponse:
    """Public, as CDS Hooks discovery is: it names the services and their prefetch, no patient data."""
    return JsonResponse(cds_discovery.discovery())


def _explained_now(prediction: Prediction) -> None:
    """Explain a score the prefetch produced within this call, so its first card lists the factors.

    explanation_compute claims the pending explanation (PENDING -> RUNNING) inside this call's
    transaction, so the worker the ingest queued on commit finds it ready and does nothing. If it
    fails, the savepoint leaves it pending for that worker and the card says to open Sightline."""
    explanation = Explanation.objects.filter(prediction=prediction, status=Explanation.Status.PENDING).first()
    if explanation is None:
        return
    try:
        with transaction.atomic():
            explanation_compute(explanation_id=explanation.pk)
    except Exception:
        log.exception("explaining prefetch-scored prediction %s in the CDS call failed", prediction.pk)


def _prediction_for(hook: HookRequest, user, service, audit: CallAudit) -> Prediction | None:
    model_id = service.version.registered_model_id
    prediction = current_prediction(user, patient_id=hook.patient_id, registered_model_id=model_id)
    if prediction is not None:
        return prediction
    if user is None:
        audit.no_card = "EHR user not mapped to a Sightline clinician"
        return None
    if not may_see_cards(user) or scored_anywhere(patient_id=hook.patient_id, registered_model_id=model_id):
        audit.no_card = "patient not visible to this user"
        return None
    scored = prefetch_score(hook, version=service.version)
    if scored is None:
        raise CdsError(
            412,
            "precondition_failed",
            "Sightline has no score for this patient and the prefetch does not carry the model's inputs "
            "(patient, encounter and coded observations); send the prefetch the discovery names.",
        )
    _explained_now(scored)
    visible = access.predictions_for_user(user).filter(pk=scored.pk).first()
    if visible is None:
        audit.no_card = "patient not visible to this user"
    return visible


def _base(request: HttpRequest) -> str:
    base = public_base_url(request)
    if base is None:
        raise CdsError(503, "not_configured", NOT_CONFIGURED)
    return base


def _handle_call(request: HttpRequest, service_id: str, base: str, audit: CallAudit):
    audit.caller = caller_verify(request, base=base)
    service = cds_discovery.service_get(service_id)
    if service is None:
        raise CdsError(404, "not_found", f"No CDS service {service_id!r}; GET /cds-services lists them.")
    body = _body(request)
    if isinstance(body, dict) and isinstance(body.get("context"), dict):
        # Named in the audit even when the rest of the request is refused.
        context = body["context"]
        audit.patient_id = str(context.get("patientId") or "")[:100] or None
        audit.hook_user = str(context.get("userId") or "")[:300] or None
    hook = hook_request_parse(body, expected_hook=cds_discovery.HOOK)
    audit.user = practitioner_user(audit.caller.ehr, hook.user_id)
    audit.prediction = _prediction_for(hook, audit.user, service, audit)
    return hook, service


def _card_record(caller: CdsCaller, hook: HookRequest, user, card_id, service_id: str, prediction, alert):
    card, _ = CdsCard.objects.get_or_create(
        uuid=card_id,
        defaults={"service_id": service_id, "ehr": caller.ehr, "prediction": prediction, "alert": alert},
    )
    CdsCardShown.objects.create(card=card, user=user, hook_instance=hook.hook_instance)
    if alert is not None:
        alert_view_record(alert=alert, user=user)


def _card(audit: CallAudit, hook: HookRequest, service, base: str) -> dict | None:
    """The call's card (recorded as shown to its clinician), or None below the model's card tier."""
    prediction = audit.prediction
    if prediction is None:
        return None
    if prediction.tier not in CdsServiceSetting.card_tiers(service.version.registered_model):
        audit.no_card = f"{prediction.tier} tier gets no card"
        return None
    alert = Alert.objects.filter(prediction=prediction).first()
    card_id = card_uuid(
        service_id=service.id,
        ehr_iss=audit.caller.ehr.iss,
        alert_id=alert.pk if alert else None,
        prediction_id=prediction.pk,
    )
    detail = score_detail_get(prediction=prediction, alert=alert)
    _card_record(audit.caller, hook, audit.user, card_id, service.id, prediction, alert)
    return risk_card(detail, card_id=card_id, base=base)


@csrf_exempt
@_only("POST")
def service_call(request: HttpRequest, service_id: str) -> JsonResponse:
    audit = CallAudit(action="cds_patient_view")
    try:
        base = _base(request)
        with transaction.atomic():
            hook, service = _handle_call(request, service_id, base, audit)
    except EhrAuthError as exc:
        return _error(exc)  # nothing stored
    except CdsError as exc:
        audit.refused(request, exc)  # after the rollback, so the refusal is on record
        return _error(exc)
    # After the commit: a prefetch scored just now is in (and explained).
    with transaction.atomic():
        card = _card(audit, hook, service, base)
        audit.answered(request, cards=1 if card else 0)
    return JsonResponse({"cards": [card] if card else []})


@csrf_exempt
@_only("POST")
def feedback(request: HttpRequest, service_id: str) -> JsonResponse:
    audit = CallAudit(action="cds_feedback")
    try:
        base = _base(request)
        with transaction.atomic():
            audit.caller = caller_verify(request, base=base)
            if cds_discovery.service_get(service_id) is None:
                raise CdsError(404, "not_found", f"No CDS service {service_id!r}.")
            body = _body(request)
            recorded = feedback_record(body=body, ehr=audit.caller.ehr, service_id=service_id, base=base)
            for action, created in recorded:
                item = CallAudit(
                    action="cds_feedback",
                    caller=audit.caller,
                    user=action.user,
                    patient_id=action.alert.patient.external_id,
                    prediction=action.alert.prediction,
                )
                done = "recorded" if created else "already recorded"
                item.write(request, outcome=f"{action.action} {done}")
    except EhrAuthError as exc:
        return _error(exc)  # nothing stored
    except (CdsError, Http404) as exc:
        if isinstance(exc, Http404):
            exc = CdsError(404, "not_found", "The card's alert is not one its clinician may see.")
        audit.refused(request, exc)
        return _error(exc)
    return JsonResponse({"recorded": sum(1 for _, created in recorded if created), "items": len(recorded)})
