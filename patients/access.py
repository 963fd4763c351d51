"""The one guard for patient rows. Every view and API endpoint that shows patient data goes
through here, and every view of a patient is recorded here (audit_view; a list or a query's
answer, with every patient it showed, by audit_list).

Which units a user sees is decided in accounts.permissions.visible_units: a clinician sees the
units on their profile; an admin and an auditor see every unit; anyone else, including a
scoring-service token, sees no patient. Objects outside a user's units answer 404, not 403, so
their existence is not disclosed.
"""

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from accounts.permissions import may_act_on_alerts, visible_units

from .models import Alert, AlertAction, AuditEvent, CurrentScore, Patient, Prediction, scored_after

ACT_DENIED = "Only the unit's clinicians and admins act on alerts; auditors have read access."


def _restrict(queryset: QuerySet, user, field: str = "unit") -> QuerySet:
    units = visible_units(user)
    if units is None:
        return queryset
    return queryset.filter(**{f"{field}__in": units})


def predictions_for_user(user) -> QuerySet[Prediction]:
    return _restrict(Prediction.objects.all(), user)


def alerts_for_user(user) -> QuerySet[Alert]:
    return _restrict(Alert.objects.all(), user)


def patients_for_user(user) -> QuerySet[Patient]:
    return _restrict(Patient.objects.all(), user)


def current_scores_for_user(user) -> QuerySet[CurrentScore]:
    """The patients' current scores, by the unit of the score (as its prediction and alert are)."""
    return _restrict(CurrentScore.objects.all(), user)


def alert_actions_for_user(user) -> QuerySet[AlertAction]:
    """Actions on the alerts of the user's units (the outcome-study export reads these)."""
    return _restrict(AlertAction.objects.all(), user, field="alert__unit")


def scored_later_outside_units(user, prediction: Prediction) -> bool:
    """Whether the patient has a later score of the same model in a unit the user does not see
    (they were moved): a yes or no, never the score or its unit."""
    units = visible_units(user)
    if units is None:
        return False
    return (
        Prediction.objects.filter(
            scored_after(prediction),
            patient_id=prediction.patient_id,
            registered_model_id=prediction.registered_model_id,
        )
        .exclude(unit__in=units)
        .exists()
    )


def prediction_for_user(user, prediction_id: int, *, request: HttpRequest | None = None) -> Prediction:
    """The prediction, or 404 when it is missing or outside the user's units; with `request`, a
    refusal of one that exists is audited (action "refused"), the answer the same 404."""
    try:
        return (
            predictions_for_user(user)
            .select_related("patient", "model_version__registered_model")
            .get(pk=prediction_id)
        )
    except Prediction.DoesNotExist:
        _audit_refused(request, Prediction.objects.filter(pk=prediction_id).first())
        raise Http404("No such prediction.") from None


def alert_for_user(user, alert_id: int, *, request: HttpRequest | None = None) -> Alert:
    """As prediction_for_user, for an alert."""
    try:
        return alerts_for_user(user).select_related("prediction", "patient").get(pk=alert_id)
    except Alert.DoesNotExist:
        refused = Alert.objects.filter(pk=alert_id).select_related("prediction").first()
        _audit_refused(request, refused.prediction if refused else None)
        raise Http404("No such alert.") from None


def _audit_refused(request: HttpRequest | None, prediction: Prediction | None) -> None:
    """Record that request.user asked for a patient's data outside their units and was refused."""
    if request is not None and prediction is not None:
        audit_view(request, action="refused", prediction=prediction)


def alert_rw_for_user(user, alert_id: int, *, request: HttpRequest | None = None) -> tuple[Alert, bool]:
    """The alert (404 outside the user's units) and whether the user may act on it."""
    return alert_for_user(user, alert_id, request=request), may_act_on_alerts(user)


def alert_to_act_on(user, alert_id: int, *, request: HttpRequest | None = None) -> Alert:
    """The alert the user acts on: 404 outside their units, 403 when their role only reads."""
    alert, may_act = alert_rw_for_user(user, alert_id, request=request)
    if not may_act:
        raise PermissionDenied(ACT_DENIED)
    return alert


@lru_cache(maxsize=8)
def _trusted_networks(proxies: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or behind a trusted proxy (settings.TRUSTED_PROXIES) the
    right-most address of settings.CLIENT_IP_HEADER that is not a trusted proxy itself."""
    remote = request.META.get("REMOTE_ADDR") or None
    trusted = _trusted_networks(tuple(getattr(settings, "TRUSTED_PROXIES", ()) or ()))
    remote_address = _address(remote or "")
    if not trusted or remote_address is None or not any(remote_address in n for n in trusted):
        return remote
    header = "HTTP_" + settings.CLIENT_IP_HEADER.upper().replace("-", "_")
    for hop in reversed((request.META.get(header) or "").split(",")):
        address = _address(hop)
        if address is None:
            return remote  # a hop that is not an address: trust nothing further left
        if not any(address in n for n in trusted):
            return str(address)
    return remote


def audit_view(
    request: HttpRequest,
    *,
    action: str,
    patient: Patient | None = None,
    prediction: Prediction | None = None,
    note: str = "",
) -> AuditEvent:
    """Record that request.user saw this patient's data (`note`: what a list showed, e.g. how many
    rows and which patients; kept after the path)."""
    path = request.get_full_path()
    if note:
        path = f"{path} [{note}]"
    return AuditEvent.objects.create(
        user=request.user if getattr(request.user, "is_authenticated", False) else None,
        patient=patient or (prediction.patient if prediction else None),
        prediction=prediction,
        action=action,
        path=path[:500],
        ip=client_ip(request),
    )


def audit_list(
    request: HttpRequest,
    *,
    action: str,
    patients: Iterable[Patient | str],
    rows: int,
    note: str = "",
) -> AuditEvent:
    """Record that request.user saw a list or a query's answer: which patients (external ids, every
    one of them, in `patients`), and over how many rows (`rows`; `note`, e.g. "100 of 675 rows" or
    the query, kept after the path)."""
    ids = sorted({p if isinstance(p, str) else p.external_id for p in patients})
    path = request.get_full_path()
    if note:
        path = f"{path} [{note}]"
    return AuditEvent.objects.create(
        user=request.user if getattr(request.user, "is_authenticated", False) else None,
        action=action,
        path=path[:500],
        ip=client_ip(request),
        patients=ids,
        rows=rows,
    )
