"""CDS Hooks 2.0 endpoints (CONTRACT.md section 8): discovery, the patient-view service, feedback.

Thin: verify the EHR's JWT first (any fault: 401 with the section-7 body, nothing stored), parse,
call interop's services, answer JSON. Each call runs in one transaction with the token's jti, so a
call that fails stores nothing, its jti included; each call that passes is audited (EHR, user,
patient).
"""

from __future__ import annotations

import logging
from functools import wraps

from django.db import transaction
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from clinician_ui.selectors import score_detail_get
from clinician_ui.services import alert_view_record
from patients import access
from patients.models import Alert, Prediction
from sightline.parsers import strict_loads

from . import cds_discovery
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


def _audit(request: HttpRequest, caller: CdsCaller, *, action: str, user, hook_user: str | None, **rows):
    request.user = user if user is not None else request.user
    note = f"EHR {caller.ehr.iss}; userId {hook_user or '-'}"
    access.audit_view(request, action=action, note=note, **rows)


@_only("GET")
def discovery(request: HttpRequest) -> JsonResponse:
    """Public, as CDS Hooks discovery is: it names the services and their prefetch, no patient data."""
    return JsonResponse(cds_discovery.discovery())


def _prediction_for(hook: HookRequest, user, service) -> Prediction | None:
    model_id = service.version.registered_model_id
    prediction = current_prediction(user, patient_id=hook.patient_id, registered_model_id=model_id)
    if prediction is not None or not may_see_cards(user):
        return prediction
    if scored_anywhere(patient_id=hook.patient_id, registered_model_id=model_id):
        return None
    scored = prefetch_score(hook, version=service.version)
    if scored is None:
        raise CdsError(
            412,
            "precondition_failed",
            "Sightline has no score for this patient and the prefetch does not carry the model's inputs "
            "(patient, encounter and coded observations); send the prefetch the discovery names.",
        )
    return access.predictions_for_user(user).filter(pk=scored.pk).first()


def _base(request: HttpRequest) -> str:
    base = public_base_url(request)
    if base is None:
        raise CdsError(503, "not_configured", NOT_CONFIGURED)
    return base


def _handle_call(request: HttpRequest, service_id: str, base: str):
    caller = caller_verify(request, base=base)
    service = cds_discovery.service_get(service_id)
    if service is None:
        raise CdsError(404, "not_found", f"No CDS service {service_id!r}; GET /cds-services lists them.")
    hook = hook_request_parse(_body(request), expected_hook=cds_discovery.HOOK)
    user = practitioner_user(caller.ehr, hook.user_id)
    prediction = _prediction_for(hook, user, service)
    _audit(
        request,
        caller,
        action="cds_patient_view",
        user=user,
        hook_user=hook.user_id,
        patient=prediction.patient if prediction else None,
        prediction=prediction,
    )
    return caller, hook, user, service, prediction


def _card_record(caller: CdsCaller, hook: HookRequest, user, service_id: str, prediction, alert) -> None:
    card_id = card_uuid(
        service_id=service_id, alert_id=alert.pk if alert else None, prediction_id=prediction.pk
    )
    card, _ = CdsCard.objects.get_or_create(
        uuid=card_id,
        defaults={"service_id": service_id, "ehr": caller.ehr, "prediction": prediction, "alert": alert},
    )
    CdsCardShown.objects.create(card=card, user=user, hook_instance=hook.hook_instance)
    if alert is not None:
        alert_view_record(alert=alert, user=user)


@csrf_exempt
@_only("POST")
def service_call(request: HttpRequest, service_id: str) -> JsonResponse:
    try:
        base = _base(request)
        with transaction.atomic():
            caller, hook, user, service, prediction = _handle_call(request, service_id, base)
    except (CdsError, EhrAuthError) as exc:
        return _error(exc)
    # After the commit: a prefetch scored just now has had its explanation queued (or computed).
    if prediction is None or prediction.tier not in CdsServiceSetting.card_tiers(
        service.version.registered_model
    ):
        return JsonResponse({"cards": []})
    alert = Alert.objects.filter(prediction=prediction).first()
    detail = score_detail_get(prediction=prediction, alert=alert)
    with transaction.atomic():
        _card_record(caller, hook, user, service.id, prediction, alert)
    return JsonResponse({"cards": [risk_card(detail, service_id=service.id, base=base)]})


@csrf_exempt
@_only("POST")
def feedback(request: HttpRequest, service_id: str) -> JsonResponse:
    try:
        base = _base(request)
        with transaction.atomic():
            caller = caller_verify(request, base=base)
            if cds_discovery.service_get(service_id) is None:
                raise CdsError(404, "not_found", f"No CDS service {service_id!r}.")
            body = _body(request)
            recorded = feedback_record(body=body, ehr=caller.ehr, service_id=service_id, base=base)
            for action, _created in recorded:
                alert = action.alert
                _audit(
                    request,
                    caller,
                    action="cds_feedback",
                    user=action.user,
                    hook_user=None,
                    patient=alert.patient,
                    prediction=alert.prediction,
                )
    except (CdsError, EhrAuthError) as exc:
        return _error(exc)
    except Http404:
        return _error(CdsError(404, "not_found", "The card's alert is not one its clinician may see."))
    return JsonResponse({"recorded": sum(1 for _, created in recorded if created), "items": len(recorded)})
