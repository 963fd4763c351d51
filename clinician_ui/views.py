"""The clinician pages. Thin: access check, audit, one selector, render. Every view needs a login."""

import hashlib
import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from explanations.models import Alert, Prediction

from . import access
from .audit_log import KNOWN_ACTIONS, PAGE_SIZE, AuditQuery, AuditSearchForm, audit_events_search
from .history import EARLIER_SCORES
from .selectors import (
    TIERS,
    ScoreDetail,
    Worklist,
    action_reasons,
    alert_actions,
    explanation_figure,
    score_detail_get,
    score_page_get,
    worklist_get,
)
from .services import alert_view_record, user_may_act


def _prediction_with_model(prediction_id: int) -> Prediction:
    return Prediction.objects.select_related("patient", "model_version__registered_model").get(
        pk=prediction_id
    )


def _worklist_filters(request: HttpRequest) -> dict:
    return {name: request.GET.get(name) or None for name in ("unit", "tier", "state")}


def _row(template, context: dict, *, key: str, css: str) -> dict:
    """One worklist row rendered by the same template for the page and the JSON poll; `sig`
    changes when anything shown changes, so the page replaces only rows that did."""
    html = template.render(context)
    return {
        "key": key,
        "css": css,
        "sig": hashlib.sha256(f"{css}|{html}".encode()).hexdigest()[:16],
        "html": html,
    }


def _worklist_rows(data: Worklist) -> tuple[list[dict], list[dict]]:
    alert_template = get_template("clinician_ui/_alert_row.html")
    low_template = get_template("clinician_ui/_low_item.html")
    alerts = [
        _row(alert_template, {"alert": alert}, key=f"alert-{alert.pk}", css=f"row-{alert.tier}")
        | {
            "alert": alert.pk,
            "patient": {"id": alert.patient.external_id, "display_name": alert.patient.display_name},
            "unit": alert.unit,
            "bed": alert.prediction.bed,
            "tier": alert.tier,
            "risk": alert.risk,
            "state": alert.state,
            "created_at": alert.created_at.isoformat(),
            "url": reverse("alert-detail", args=[alert.pk]),
            "trend": alert.trend.as_json(),
        }
        for alert in data.alerts
    ]
    low = [
        _row(low_template, {"prediction": p}, key=f"prediction-{p.pk}", css="row-low")
        | {
            "prediction": p.pk,
            "patient": {"id": p.patient.external_id, "display_name": p.patient.display_name},
            "unit": p.unit,
            "bed": p.bed,
            "tier": p.tier,
            "risk": p.risk,
            "url": reverse("prediction-detail", args=[p.pk]),
            "trend": p.trend.as_json(),
        }
        for p in data.low
    ]
    return alerts, low


@require_GET
@login_required
def worklist(request: HttpRequest) -> HttpResponse:
    data = worklist_get(user=request.user, **_worklist_filters(request))
    access.audit_view(request, action="view_worklist")
    alert_rows, low_rows = _worklist_rows(data)
    context = {
        "worklist": data,
        "tiers": TIERS,
        "states": Alert.State.choices,
        "alert_rows": alert_rows,
        "low_rows": low_rows,
        "poll_seconds": settings.WORKLIST_POLL_SECONDS,
    }
    return render(request, "clinician_ui/worklist.html", context)


@require_GET
@login_required
def worklist_json(request: HttpRequest) -> JsonResponse:
    """The worklist page's rows for its background refresh, through the same selector and filters.

    Not audited per poll: the page load that started the polling is (view_worklist), and a
    record every 15 s per open screen would bury the patient-level records auditors read."""
    data = worklist_get(user=request.user, **_worklist_filters(request))
    alert_rows, low_rows = _worklist_rows(data)
    return JsonResponse(
        {
            "generated_at": timezone.now().isoformat(),
            "poll_seconds": settings.WORKLIST_POLL_SECONDS,
            "filters": {"unit": data.unit, "tier": data.tier, "state": data.state},
            "shows_alerts": data.shows_alerts,
            "shows_low": data.shows_low,
            "alerts": alert_rows,
            "low": low_rows,
        }
    )


def _render_score(request: HttpRequest, detail: ScoreDetail, *, full: bool) -> HttpResponse:
    alert = detail.alert
    context = {
        "detail": detail,
        "prediction": detail.prediction,
        "patient": detail.prediction.patient,
        "version": detail.prediction.model_version,
        "alert": alert,
        # Low tier shows a minimal cue unless the clinician asks for the full explanation.
        "full": full or detail.prediction.tier != "low",
        "earlier_limit": EARLIER_SCORES,
        "user_units_limited": access.visible_units(request.user) is not None,
    }
    if alert is not None:
        context.update(
            {
                "actions": alert_actions(alert),
                "may_act": user_may_act(request.user),
                "reasons": action_reasons(),
                # One key per page load: a double click posts the same key and is one action.
                "idempotency_key": uuid.uuid4().hex,
            }
        )
    return render(request, "clinician_ui/score.html", context)


@require_GET
@login_required
def prediction_detail(request: HttpRequest, prediction_id: int) -> HttpResponse:
    prediction = access.prediction_for_user(request.user, prediction_id)
    expand = prediction.tier == "low" and request.GET.get("full") == "1"
    access.audit_view(
        request, action="expand_low_tier" if expand else "view_prediction", prediction=prediction
    )
    alert = Alert.objects.filter(prediction=prediction).first()
    if alert is not None:
        alert_view_record(alert=alert, user=request.user)
    detail = score_page_get(user=request.user, prediction=prediction, alert=alert)
    return _render_score(request, detail, full=expand)


@require_GET
@login_required
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = access.alert_for_user(request.user, alert_id)
    prediction = _prediction_with_model(alert.prediction_id)
    access.audit_view(request, action="view_alert", prediction=prediction)
    alert_view_record(alert=alert, user=request.user)
    detail = score_page_get(user=request.user, prediction=prediction, alert=alert)
    return _render_score(request, detail, full=False)


@require_GET
@login_required
def explanation_json(request: HttpRequest, prediction_id: int) -> JsonResponse:
    """The waterfall's data; numbers only once the explanation is ready."""
    prediction = access.prediction_for_user(request.user, prediction_id)
    access.audit_view(request, action="view_explanation_json", prediction=prediction)
    return JsonResponse(explanation_figure(score_detail_get(prediction=prediction)))


@require_GET
@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    """The audit log for auditors and admins: search by user, patient, action and dates."""
    if not access.may_read_audit(request.user):
        raise PermissionDenied("Only auditors and admins read the audit log.")
    form = AuditSearchForm(request.GET or None)
    query = AuditQuery(**form.cleaned_data) if form.is_bound and form.is_valid() else AuditQuery()
    page = None
    if not form.is_bound or form.is_valid():
        page = Paginator(audit_events_search(query=query), PAGE_SIZE).get_page(request.GET.get("page"))
        # Read before this view's own record is written, so the page matches its count.
        page.object_list = list(page.object_list)
    access.audit_view(request, action="view_audit_log")
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "clinician_ui/audit.html",
        {
            "form": form,
            "page": page,
            "known_actions": KNOWN_ACTIONS,
            "query_string": params.urlencode(),
            "export_url": reverse("export-overrides"),
        },
    )
