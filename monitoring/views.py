"""The monitoring dashboard (admins only) and the JSON its charts read. Thin: check, parse, read the
cached summary (queueing it when missing), shape it for one figure."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from accounts.permissions import may_view_monitoring
from engine.tiers import TIER_NAMES_MILDEST_FIRST
from models_registry.models import ModelVersion
from models_registry.selectors import production_versions
from patients.models import Patient
from sightline.api_errors import error_body

from .refresh import page_window
from .selectors import Slice
from .services import Comparison, default_window, summary_invalidate, summary_request
from .subgroups import calibration_points, subgroups_request

MAX_WINDOW_DAYS = 400
POLL_SECONDS = 2


def _error(status: int, code: str, detail: str, field: str | None = None) -> JsonResponse:
    fields = {field: [detail]} if field else None
    return JsonResponse(error_body(code, detail, fields), status=status)


def admin_json(view):
    """JSON endpoints: 401 without a login, 403 for anyone but an admin (JSON, never HTML)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return _error(401, "not_authenticated", "Log in as an admin to read monitoring data.")
        if not may_view_monitoring(request.user):
            return _error(403, "permission_denied", "Monitoring dashboards are for admins.")
        return view(request, *args, **kwargs)

    return wrapper


class BadParameter(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _when(params: QueryDict, name: str, default: datetime | None) -> datetime | None:
    raw = params.get(name)
    if not raw:
        return default
    value = parse_datetime(raw)
    if value is None:
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise BadParameter(name, f"'{raw}' is not an ISO-8601 date or time.") from None
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.UTC)
    return value


def _computing() -> JsonResponse:
    """202: still being computed; ask again in POLL_SECONDS."""
    response = JsonResponse({"status": "computing", "retry_after": POLL_SECONDS}, status=202)
    response["Retry-After"] = str(POLL_SECONDS)
    return response


def comparison_from(params: QueryDict) -> Comparison:
    """The comparison the parameters ask for; BadParameter names the parameter that is wrong."""
    raw_version = params.get("version")
    if raw_version:
        if not raw_version.isdigit():
            raise BadParameter("version", "Expected a model version id.")
        version = ModelVersion.objects.filter(pk=int(raw_version)).first()
        if version is None:
            raise BadParameter("version", f"No model version {raw_version}.")
    else:
        version = production_versions().first()
        if version is None:
            raise BadParameter("version", "No model version is in production; choose one.")
    default_start, default_end = default_window(version.pk)
    start = _when(params, "from", default_start)
    end = _when(params, "to", default_end)
    if end <= start:
        raise BadParameter("to", "'to' must be after 'from'.")
    if end - start > timedelta(days=MAX_WINDOW_DAYS):
        raise BadParameter("from", f"A window is at most {MAX_WINDOW_DAYS} days.")
    try:
        where = Slice.parse(params.get("slice"))
    except ValueError as exc:
        raise BadParameter("slice", str(exc)) from None
    reference = params.get("reference") or "reference"
    if reference not in ("reference", "window"):
        raise BadParameter("reference", "Expected 'reference' (the version's reference set) or 'window'.")
    ref_start = ref_end = None
    if reference == "window":
        ref_start = _when(params, "ref_from", None)
        ref_end = _when(params, "ref_to", None)
        if ref_start is None or ref_end is None:
            raise BadParameter("ref_from", "A past-window reference needs 'ref_from' and 'ref_to'.")
        if ref_end <= ref_start:
            raise BadParameter("ref_to", "'ref_to' must be after 'ref_from'.")
    return Comparison(
        version_id=version.pk,
        start=start,
        end=end,
        where=str(where),
        reference=reference,
        reference_start=ref_start,
        reference_end=ref_end,
    )


def summary_json(shape):
    """A chart-data view: parse the comparison, read the cached summary, return `shape(summary)`.
    A summary still being computed answers 202 with when to ask again."""

    @wraps(shape)
    @require_GET
    @admin_json
    def view(request: HttpRequest) -> JsonResponse:
        try:
            comparison = comparison_from(request.GET)
        except BadParameter as exc:
            return _error(400, "invalid", f"{exc.field}: {exc}", exc.field)
        summary = summary_request(comparison=comparison)
        if summary is None:
            return _computing()
        try:
            return JsonResponse(shape(request, summary))
        except BadParameter as exc:
            return _error(404 if exc.field == "feature" else 400, "not_found", str(exc), exc.field)

    return view


@summary_json
def summary_data(request: HttpRequest, summary: dict) -> dict:
    """Tables and headline figures: everything but the per-feature distributions and the series."""
    return {k: v for k, v in summary.items() if k not in ("distributions",)}


@summary_json
def feature_data(request: HttpRequest, summary: dict) -> dict:
    """One feature's distribution overlay: shares per bin (or level) in each cohort and missing shares."""
    name = request.GET.get("feature", "")
    if name not in summary["distributions"]:
        raise BadParameter("feature", f"No feature '{name}' in model version {summary['version']['id']}.")
    row = next(r for r in summary["features"] if r["feature"] == name)
    return {"feature": name, "label": row["label"], "unit": row["unit"], **summary["distributions"][name]}


@summary_json
def prediction_data(request: HttpRequest, summary: dict) -> dict:
    """Risk distribution overlay and, per time bucket, risk PSI and tier mix."""
    prediction = summary["prediction"]
    windows = prediction["windows"]
    return {
        "histogram": prediction["histogram"],
        "bucket": prediction["bucket"],
        "x": [w["window"] for w in windows],
        "n": [w["n"] for w in windows],
        "psi": [w["psi"] for w in windows],
        "tiers": {t: [w["tier_mix"].get(t, 0.0) for w in windows] for t in TIER_NAMES_MILDEST_FIRST},
        "psi_thresholds": summary["thresholds"]["psi"],
    }


@summary_json
def performance_data(request: HttpRequest, summary: dict) -> dict:
    """Per time bucket: realised AUROC with its CI (when outcomes are known) and the CBPE estimate."""
    perf = summary["performance"]
    windows = perf["windows"]

    def ci(w: dict, metric: str, end: int) -> float | None:
        interval = w["realised"].get("ci", {}).get(metric)
        return interval[end] if interval else None

    return {
        "unit_of_analysis": perf["unit_of_analysis"],
        "x": [w["window"] for w in windows],
        "labelled": [w["realised"]["n"] for w in windows],
        "encounters": [w["encounters"] for w in windows],
        "auroc": [w["realised"].get("auroc") for w in windows],
        "auroc_low": [ci(w, "auroc", 0) for w in windows],
        "auroc_high": [ci(w, "auroc", 1) for w in windows],
        "estimated_auroc": [w["estimate"].get("auroc") for w in windows],
        "calibration": perf["overall"]["realised"].get("calibration", []),
        "overall": perf["overall"],
    }


@summary_json
def burden_data(request: HttpRequest, summary: dict) -> dict:
    return summary["burden"]


@require_GET
@admin_json
def subgroups_data(request: HttpRequest) -> JsonResponse:
    """Per subgroup of the window and slice: figures once outcomes arrive, CBPE before (marked as an
    estimate), alert burden and overrides; flags; rows sorted by disparity; the calibration chart's
    points (mean risk against observed rate, or expected rate before outcomes)."""
    try:
        comparison = comparison_from(request.GET)
    except BadParameter as exc:
        return _error(400, "invalid", f"{exc.field}: {exc}", exc.field)
    view = subgroups_request(comparison=comparison)
    if view is None:
        return _computing()
    return JsonResponse({**view, "calibration": calibration_points(view)})


@require_POST
@admin_json
def refresh(request: HttpRequest) -> JsonResponse:
    """Recompute now (on demand): drop the cached summary and queue it again."""
    try:
        comparison = comparison_from(request.POST)
    except BadParameter as exc:
        return _error(400, "invalid", f"{exc.field}: {exc}", exc.field)
    summary_invalidate(comparison=comparison)
    summary = summary_request(comparison=comparison)
    return JsonResponse({"status": "ready" if summary else "computing"}, status=200 if summary else 202)


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    if not may_view_monitoring(request.user):
        raise PermissionDenied("Monitoring dashboards are for admins.")
    versions = ModelVersion.objects.select_related("registered_model").order_by(
        "registered_model__name", "-version"
    )
    production = next((v for v in versions if v.status == ModelVersion.Status.PRODUCTION), None)
    units = Patient.objects.values_list("unit", flat=True).distinct().order_by("unit")
    start, end, newer_from = page_window(production.pk if production else None)
    return render(
        request,
        "monitoring/dashboard.html",
        {
            "versions": versions,
            "selected_version": production.pk if production else None,
            "units": list(units),
            "default_from": start.strftime("%Y-%m-%dT%H:%M"),
            "default_to": end.strftime("%Y-%m-%dT%H:%M"),
            "poll_seconds": POLL_SECONDS,
            "newer_from": newer_from,
            "refresh_seconds": settings.MONITORING_REFRESH_DEBOUNCE_SECONDS,
        },
    )
