"""SMART App Launch v2, EHR launch (CONTRACT.md section 8): ``/smart/launch`` and ``/smart/callback``.

Only a registered, unrevoked ``iss`` is discovered (its ``.well-known/smart-configuration``, fetched
through the allow-listed client); the browser goes to its authorization endpoint with PKCE S256, a
``state`` and a ``nonce`` kept in this session. The callback exchanges the code, validates the
id_token, maps ``fhirUser`` to a Sightline user (interop.models.PractitionerMapping; the mapping never
grants a role), signs that user in for as long as the EHR's access token lasts, and opens the launch
patient's current alert (or score) page through the one access guard: a patient outside the user's
units is the usual 404.
"""

from __future__ import annotations

import logging
import time

from authlib.common.security import generate_token
from django.conf import settings
from django.contrib.auth import login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from accounts.sessions import session_expire_at
from patients import access

from .cds_service import practitioner_user
from .ehr_http import AllowListedHttp, SmartLaunchError
from .ehr_registry import ehr_active
from .models import RegisteredEhr
from .public_url import NOT_CONFIGURED, public_base_url
from .smart_client import (
    DEFAULT_SCOPE,
    authorization_url,
    callback_code,
    discover,
    exchange_code,
    fetch_jwks,
    launch_context,
    validate_id_token,
)

log = logging.getLogger(__name__)
SESSION_KEY = "smart_launch"
MAX_PARAM = 2000


def redirect_uri(request: HttpRequest) -> str:
    base = public_base_url(request)
    if base is None:
        raise SmartLaunchError("not_configured", NOT_CONFIGURED, status=503)
    return base + reverse("smart-callback")


def _error(exc: SmartLaunchError) -> JsonResponse:
    log.warning("SMART launch refused: %s", exc)
    return JsonResponse(exc.as_error_body(), status=exc.status)


def _param(request: HttpRequest, name: str) -> str:
    value = request.GET.get(name, "").strip()
    if not value:
        raise SmartLaunchError("invalid", f"{name}: required (the EHR launch passes iss and launch).")
    if len(value) > MAX_PARAM:
        raise SmartLaunchError("invalid", f"{name}: longer than {MAX_PARAM} characters.")
    return value


def _ehr(iss: str) -> RegisteredEhr:
    ehr = ehr_active(iss)
    if ehr is None:
        raise SmartLaunchError(
            "unknown_issuer",
            f"iss: {iss} is not an EHR registered with Sightline (or it was revoked); an administrator "
            "registers it with manage.py register_ehr.",
            status=403,
        )
    if not ehr.client_id:
        raise SmartLaunchError(
            "no_client_id",
            f"The EHR {ehr.iss} has no SMART client id; register it with register_ehr --client-id.",
            status=403,
        )
    return ehr


def _http(ehr: RegisteredEhr) -> AllowListedHttp:
    return AllowListedHttp.for_issuer(ehr.iss, timeout=settings.EHR_HTTP_TIMEOUT_SECONDS)


@require_GET
def launch(request: HttpRequest) -> HttpResponse:
    try:
        callback_uri = redirect_uri(request)
        iss, launch_id = _param(request, "iss"), _param(request, "launch")
        ehr = _ehr(iss)
        config = discover(ehr.iss, _http(ehr).get, extra_origins=ehr.smart_origins)
        nonce = generate_token(32)
        url, state, verifier = authorization_url(
            config,
            client_id=ehr.client_id,
            redirect_uri=callback_uri,
            launch=launch_id,
            iss=ehr.iss,
            scope=DEFAULT_SCOPE,
            nonce=nonce,
        )
    except SmartLaunchError as exc:
        return _error(exc)
    request.session[SESSION_KEY] = {"iss": ehr.iss, "state": state, "verifier": verifier, "nonce": nonce}
    return HttpResponseRedirect(url)


def _signed_in_context(request: HttpRequest):
    pending = request.session.get(SESSION_KEY) or {}
    code = callback_code(request.GET, expected_state=pending.get("state"))
    # One attempt per launch: a replayed callback finds no launch in progress.
    request.session.pop(SESSION_KEY, None)
    ehr = _ehr(pending["iss"])
    http = _http(ehr)
    config = discover(ehr.iss, http.get, extra_origins=ehr.smart_origins)
    http = http.allowing(*config.endpoint_urls())
    tokens = exchange_code(
        config,
        client_id=ehr.client_id,
        redirect_uri=redirect_uri(request),
        code=code,
        code_verifier=pending["verifier"],
        http_post=http.post,
    )
    if not tokens.get("id_token"):
        raise SmartLaunchError("invalid_id_token", "The token response has no id_token (scope openid).", 401)
    claims = validate_id_token(
        tokens["id_token"],
        jwks=fetch_jwks(config, http.get),
        issuer=config.issuer,
        client_id=ehr.client_id,
        nonce=pending["nonce"],
        leeway=settings.CDS_JWT_LEEWAY_SECONDS,
    )
    context = launch_context(tokens, claims)
    if not context.patient:
        raise SmartLaunchError(
            "no_patient", "The EHR launch carries no patient; launch from a patient's chart."
        )
    user = practitioner_user(ehr, context.fhir_user_reference)
    if user is None:
        raise SmartLaunchError(
            "user_not_mapped",
            f"The EHR user {context.fhir_user_reference} is not mapped to an active Sightline clinician or "
            "auditor (an admin account is never signed in from an EHR); an administrator adds the "
            "mapping (Django admin: Practitioner mappings).",
            status=403,
        )
    return ehr, context, user


@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    try:
        ehr, context, user = _signed_in_context(request)
    except SmartLaunchError as exc:
        return _error(exc)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    lifetime = min(
        context.expires_in or settings.SMART_SESSION_MAX_SECONDS, settings.SMART_SESSION_MAX_SECONDS
    )
    # An absolute end: activity in Sightline does not outlive the EHR's token.
    session_expire_at(request.session, time.time() + lifetime)
    request.session["smart"] = {"iss": ehr.iss, "patient": context.patient, "fhir_user": context.fhir_user}
    current = (
        access.current_scores_for_user(user)
        .filter(patient__external_id=context.patient)
        .select_related("prediction", "patient")
        .order_by("-scored_at")
        .first()
    )
    if current is None:
        access.audit_view(request, action="smart_launch_refused", note=f"EHR {ehr.iss}; patient not visible")
        raise Http404("No such patient.")
    access.audit_view(request, action="smart_launch", prediction=current.prediction, note=f"EHR {ehr.iss}")
    if current.alert_id is not None:
        return HttpResponseRedirect(reverse("alert-detail", args=[current.alert_id]))
    return HttpResponseRedirect(reverse("prediction-detail", args=[current.prediction_id]))
