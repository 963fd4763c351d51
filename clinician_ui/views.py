"""The clinician pages. Thin: access check, audit, one selector, render. Every view needs a login."""

import uuid

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from explanations.models import Alert, Prediction

from . import access
from .selectors import (
    TIERS,
    ScoreDetail,
    action_reasons,
    alert_actions,
    explanation_figure,
    score_detail_get,
    worklist_get,
)
from .services import alert_view_record, user_may_act


def _prediction_with_model(prediction_id: int) -> Prediction:
    return Prediction.objects.select_related("patient", "model_version__registered_model").get(
        pk=prediction_id
    )


@require_GET
@login_required
def worklist(request: HttpRequest) -> HttpResponse:
    data = worklist_get(user=request.user, unit=request.GET.get("unit"), tier=request.GET.get("tier"))
    access.audit_view(request, action="view_worklist")
    return render(request, "clinician_ui/worklist.html", {"worklist": data, "tiers": TIERS})


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
    detail = score_detail_get(prediction=prediction, alert=alert)
    return _render_score(request, detail, full=expand)


@require_GET
@login_required
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = access.alert_for_user(request.user, alert_id)
    prediction = _prediction_with_model(alert.prediction_id)
    access.audit_view(request, action="view_alert", prediction=prediction)
    alert_view_record(alert=alert, user=request.user)
    detail = score_detail_get(prediction=prediction, alert=alert)
    return _render_score(request, detail, full=False)


@require_GET
@login_required
def explanation_json(request: HttpRequest, prediction_id: int) -> JsonResponse:
    """The waterfall's data; numbers only once the explanation is ready."""
    prediction = access.prediction_for_user(request.user, prediction_id)
    access.audit_view(request, action="view_explanation_json", prediction=prediction)
    return JsonResponse(explanation_figure(score_detail_get(prediction=prediction)))
