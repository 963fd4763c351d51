"""The clinician pages. Thin: access check, audit, one selector, render. Every view needs a login."""

import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.shortcuts import render
from django.template import RequestContext, Template
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.http import parse_etags, quote_etag
from django.views.decorators.http import require_GET

from accounts import permissions
from common.timestamps import iso_utc
from engine.tiers import TIERS, Tier
from patients import access
from patients.models import Alert, Prediction
from sightline.api_errors import error_body

from .audit_log import (
    KNOWN_ACTIONS,
    PAGE_SIZE,
    AuditQuery,
    AuditSearchForm,
    audit_events_search,
    patients_shown,
)
from .history import EARLIER_SCORES
from .selectors import (
    ScoreDetail,
    action_reasons,
    alert_actions,
    explanation_figure,
    score_detail_get,
    score_page_get,
    worklist_get,
)
from .selectors.worklist import PageNumberInvalid
from .services import alert_view_record
from .worklist_poll import worklist_poll
from .worklist_rows import alert_rows_json, low_rows_json, rows_html, worklist_rows


def _prediction_with_model(prediction_id: int) -> Prediction:
    return Prediction.objects.select_related("patient", "model_version__registered_model").get(
        pk=prediction_id
    )


def _worklist_filters(request: HttpRequest) -> dict:
    """The filters and the page of each list; the live poll sends the page's own query string,
    so a clinician on page 3 keeps seeing page 3."""
    filters = {name: request.GET.get(name) or None for name in ("unit", "tier", "state")}
    return filters | {
        "page": request.GET.get("page"),
        "low_page": request.GET.get("low_page"),
        "include_left": request.GET.get("left") == "1",
    }


def _page_url(request: HttpRequest, **changes) -> str:
    params = request.GET.copy()
    for name, value in changes.items():
        params[name] = str(value)
    return "?" + params.urlencode()


# A page parameter that is no page number (selectors.worklist._page_number): the page says which
# and how to get back, in the site's frame.
_BAD_PAGE = Template(
    '{% extends "base.html" %}{% block title %}Bad page number{% endblock %}{% block content %}'
    "<h1>Bad page number</h1><p>{{ message }}</p>"
    "<p><a href=\"{% url 'worklist' %}\">Back to the first page of the worklist</a></p>{% endblock %}"
)


def _bad_page(request: HttpRequest, error: PageNumberInvalid) -> HttpResponse:
    return HttpResponse(_BAD_PAGE.render(RequestContext(request, {"message": str(error)})), status=400)


def _bad_page_json(error: PageNumberInvalid) -> JsonResponse:
    return JsonResponse(error_body("invalid", str(error), {error.field: [error.message]}), status=400)


@require_GET
@login_required
def worklist(request: HttpRequest) -> HttpResponse:
    try:
        data = worklist_get(user=request.user, **_worklist_filters(request))
    except PageNumberInvalid as error:
        return _bad_page(request, error)
    _audit_worklist(request, data, action="view_worklist")
    alert_rows, low_rows = worklist_rows(data)
    poll = worklist_poll(data=data, alert_rows=alert_rows, low_rows=low_rows, client_versions=[])
    pages = {
        "alerts_previous": _page_url(request, page=data.alerts_page.number - 1),
        "alerts_next": _page_url(request, page=data.alerts_page.number + 1),
        "low_previous": _page_url(request, low_page=data.low_page.number - 1),
        "low_next": _page_url(request, low_page=data.low_page.number + 1),
        "with_left": _page_url(request, left=1, page=1, low_page=1),
        "without_left": _page_url(request, left=0, page=1, low_page=1),
    }
    context = {
        "worklist": data,
        "pages": pages,
        "tiers": TIERS,
        "states": Alert.State.choices,
        "alert_rows": rows_html(alert_rows, tag="tr"),
        "low_rows": rows_html(low_rows, tag="li"),
        "poll_seconds": settings.WORKLIST_POLL_SECONDS,
        "list_version": poll.version,
    }
    return render(request, "clinician_ui/worklist.html", context)


def _audit_worklist(request: HttpRequest, data, *, action: str) -> None:
    """One record per worklist answer: every patient of its pages, and how many rows of how many."""
    shown = [row.patient for row in (*data.alerts, *data.low)]
    access.audit_list(
        request,
        action=action,
        patients=shown,
        rows=len(shown),
        note=f"alerts {len(data.alerts)} of {data.alerts_page.total}, low {len(data.low)} of "
        f"{data.low_page.total}",
    )


def _client_versions(request: HttpRequest) -> list[str]:
    """The list versions the page says it holds (If-None-Match), unquoted."""
    etags = parse_etags(request.headers.get("If-None-Match", ""))
    return [etag.removeprefix("W/").strip('"') for etag in etags]


@require_GET
@login_required
def worklist_json(request: HttpRequest) -> HttpResponse:
    """The worklist page's rows for its background refresh, through the same selector and filters:
    304 when the page's list (If-None-Match) is current, else the rows in order, those the page
    holds unchanged by key alone (worklist_poll).

    Every answer with rows is audited with the patients it lists (a 304 carries no patient data,
    so an unchanged list polled every 15 s writes nothing). A page parameter that is no page
    number is 400 JSON naming it."""
    try:
        data = worklist_get(user=request.user, **_worklist_filters(request))
    except PageNumberInvalid as error:
        return _bad_page_json(error)
    alert_rows, low_rows = worklist_rows(data)
    poll = worklist_poll(
        data=data, alert_rows=alert_rows, low_rows=low_rows, client_versions=_client_versions(request)
    )
    if poll.unchanged:
        response = HttpResponseNotModified()
    else:
        _audit_worklist(request, data, action="worklist_json")
        response = JsonResponse(
            {
                "version": poll.version,
                "base": poll.base,
                "generated_at": iso_utc(timezone.now()),
                "poll_seconds": settings.WORKLIST_POLL_SECONDS,
                "filters": {"unit": data.unit, "tier": data.tier, "state": data.state},
                "shows_alerts": data.shows_alerts,
                "shows_low": data.shows_low,
                "pages": {"alerts": data.alerts_page.as_json(), "low": data.low_page.as_json()},
                "alerts": alert_rows_json(data, alert_rows, held=poll.held),
                "low": low_rows_json(data, low_rows, held=poll.held),
            }
        )
    response["ETag"] = quote_etag(poll.version)
    # Patient data: kept by no shared cache, and revalidated by the page on every poll.
    patch_cache_control(response, private=True, no_cache=True, no_store=True)
    return response


def _render_score(request: HttpRequest, detail: ScoreDetail, *, full: bool, may_act: bool) -> HttpResponse:
    alert = detail.alert
    context = {
        "detail": detail,
        "prediction": detail.prediction,
        "patient": detail.prediction.patient,
        "version": detail.prediction.model_version,
        "alert": alert,
        # Low tier shows a minimal cue unless the clinician asks for the full explanation.
        "full": full or detail.prediction.tier != Tier.LOW,
        "earlier_limit": EARLIER_SCORES,
        "user_units_limited": permissions.visible_units(request.user) is not None,
    }
    if alert is not None:
        context.update(
            {
                "actions": alert_actions(alert),
                "may_act": may_act,
                "reasons": action_reasons(),
                # One key per page load: a double click posts the same key and is one action.
                "idempotency_key": uuid.uuid4().hex,
            }
        )
    return render(request, "clinician_ui/score.html", context)


@require_GET
@login_required
def prediction_detail(request: HttpRequest, prediction_id: int) -> HttpResponse:
    prediction = access.prediction_for_user(request.user, prediction_id, request=request)
    expand = prediction.tier == Tier.LOW and request.GET.get("full") == "1"
    access.audit_view(
        request, action="expand_low_tier" if expand else "view_prediction", prediction=prediction
    )
    alert, may_act = None, False
    alert_id = Alert.objects.filter(prediction=prediction).values_list("pk", flat=True).first()
    if alert_id is not None:
        alert, may_act = access.alert_rw_for_user(request.user, alert_id, request=request)
        alert_view_record(alert=alert, user=request.user)
    detail = score_page_get(user=request.user, prediction=prediction, alert=alert)
    return _render_score(request, detail, full=expand, may_act=may_act)


@require_GET
@login_required
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert, may_act = access.alert_rw_for_user(request.user, alert_id, request=request)
    prediction = _prediction_with_model(alert.prediction_id)
    access.audit_view(request, action="view_alert", prediction=prediction)
    alert_view_record(alert=alert, user=request.user)
    detail = score_page_get(user=request.user, prediction=prediction, alert=alert)
    return _render_score(request, detail, full=False, may_act=may_act)


@require_GET
@login_required
def explanation_json(request: HttpRequest, prediction_id: int) -> JsonResponse:
    """The waterfall's data; numbers only once the explanation is ready."""
    prediction = access.prediction_for_user(request.user, prediction_id, request=request)
    access.audit_view(request, action="view_explanation_json", prediction=prediction)
    return JsonResponse(explanation_figure(score_detail_get(prediction=prediction)))


@require_GET
@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    """The audit log for auditors and admins: search by user, patient, action and dates."""
    if not permissions.may_read_audit(request.user):
        raise PermissionDenied("Only auditors and admins read the audit log.")
    form = AuditSearchForm(request.GET or None)
    query = AuditQuery(**form.cleaned_data) if form.is_bound and form.is_valid() else AuditQuery()
    page = None
    if not form.is_bound or form.is_valid():
        page = Paginator(audit_events_search(query=query), PAGE_SIZE).get_page(request.GET.get("page"))
        # Read before this view's own record is written, so the page matches its count.
        page.object_list = list(page.object_list)
    shown = page.object_list if page is not None else []
    # The page shows the patients its records name (name and id) and the ids of lists they record.
    access.audit_list(
        request,
        action="view_audit_log",
        patients=patients_shown(shown),
        rows=len(shown),
        note=f"{len(shown)} of {page.paginator.count} records" if page is not None else "",
    )
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
