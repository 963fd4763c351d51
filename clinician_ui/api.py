"""POST /api/v1/alerts/{id}/actions/ (CONTRACT.md section 4): the UI and other clients post the same."""

import tempfile

from django.http import FileResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import permissions
from accounts.auth import SessionLoginAuthentication
from common.timestamps import iso_utc
from patients import access
from patients.models import AlertAction
from sightline.api_errors import ApiError

from .exports import (
    ExportParamError,
    csv_stream,
    export_chunks,
    export_snapshot,
    export_window_parse,
    overrides_queryset,
    parquet_write,
)
from .selectors import action_reasons, reason_label
from .services import alert_action_record


def _reason_codes() -> list[str]:
    return sorted({r["code"] for reasons in action_reasons().values() for r in reasons})


# Documented as enums in the schema; validated below with messages that list the choices.
@extend_schema_field({"type": "string", "enum": list(AlertAction.Action.values)})
class _ActionField(serializers.CharField):
    pass


@extend_schema_field({"type": "string", "enum": _reason_codes()})
class _ReasonField(serializers.CharField):
    pass


class AlertActionInput(serializers.Serializer):
    action = _ActionField()
    reason = _ReasonField(help_text="A reason code of the action (settings.ALERT_ACTION_REASONS).")
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    idempotency_key = serializers.CharField(required=False, allow_blank=False, max_length=64)

    def validate_action(self, value: str) -> str:
        if value not in AlertAction.Action.values:
            raise serializers.ValidationError(
                f"Unknown action {value!r}; use one of: {', '.join(AlertAction.Action.values)}."
            )
        return value

    def validate(self, data: dict) -> dict:
        codes = [r["code"] for r in action_reasons().get(data["action"], [])]
        if data["reason"] not in codes:
            unknown = f"Unknown reason {data['reason']!r} for {data['action']}"
            raise serializers.ValidationError({"reason": [f"{unknown}; use one of: {', '.join(codes)}."]})
        return data


class AlertActionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    alert = serializers.IntegerField(source="alert_id")
    action = serializers.CharField()
    reason = serializers.CharField()
    reason_label = serializers.SerializerMethodField()
    comment = serializers.CharField()
    user = serializers.CharField(source="user.username")
    role = serializers.CharField()
    shown_at = serializers.DateTimeField()
    acted_at = serializers.DateTimeField()
    seconds_to_decision = serializers.FloatField()
    idempotency_key = serializers.CharField()
    alert_state = serializers.CharField(source="alert.state")

    def get_reason_label(self, record: AlertAction) -> str:
        return reason_label(record.action, record.reason)


class AlertActionCreateApi(APIView):
    # People act on alerts, never a scoring-service token; DRF's session auth enforces CSRF.
    authentication_classes = [SessionLoginAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=AlertActionInput,
        responses={201: AlertActionOutput, 200: AlertActionOutput},
        description="Record a clinician's action on an alert. Append-only; a repeated idempotency_key "
        "returns the first action (200); the same key with another action, reason or comment is 409.",
    )
    def post(self, request, alert_id: int) -> Response:
        alert = access.alert_to_act_on(request.user, alert_id, request=request)
        serializer = AlertActionInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        record, created = alert_action_record(alert=alert, user=request.user, **serializer.validated_data)
        access.audit_view(
            request, action=f"alert_{record.action}", patient=alert.patient, prediction=alert.prediction
        )
        record.alert = alert
        return Response(
            AlertActionOutput(record).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class _JsonErrorsOnly(DefaultContentNegotiation):
    """`format` is the export's own parameter (csv|parquet), not DRF's renderer override; the view
    builds its file responses itself and DRF renders only its JSON errors."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class OverridesExportApi(APIView):
    """GET /api/v1/exports/overrides/?from=...&to=...&format=csv|parquet (CONTRACT.md section 4)."""

    authentication_classes = [SessionLoginAuthentication]
    permission_classes = [IsAuthenticated]
    content_negotiation_class = _JsonErrorsOnly

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "from", str, required=True, description="ISO-8601 date or datetime (inclusive)."
            ),
            OpenApiParameter(
                "to", str, required=True, description="ISO-8601 datetime (exclusive), or a date: to its end."
            ),
            OpenApiParameter("format", str, enum=["csv", "parquet"], description="Default csv."),
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY,
        },
        description="One row per clinician action on an alert in the window, oldest first, with a "
        "pseudonymised patient id, the top features shown and the outcome when known. Admins and auditors.",
    )
    def get(self, request):
        if not permissions.may_read_audit(request.user):
            raise ApiError(
                code="permission_denied",
                detail="Only admins and auditors export clinicians' actions.",
                status_code=status.HTTP_403_FORBIDDEN,
            )
        try:
            window = export_window_parse(request.query_params)
        except ExportParamError as exc:
            raise ApiError(code="invalid", detail=str(exc), fields={exc.field: [exc.message]}) from None
        snapshot = export_snapshot(overrides_queryset(access.alert_actions_for_user(request.user), window))
        # Who was exported (the file itself holds only pseudonyms), over how many rows of which query.
        access.audit_list(
            request,
            action="export",
            patients=snapshot.patients,
            rows=snapshot.rows,
            note=f"{snapshot.rows} rows, acted_at from {iso_utc(window.start)} to {iso_utc(window.end)}",
        )
        chunks = export_chunks(snapshot.queryset)
        if window.format == "csv":
            response = StreamingHttpResponse(csv_stream(chunks), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{window.filename}"'
            return response
        # Parquet needs its footer last: row groups go to a temporary file (deleted when closed),
        # which is then streamed.
        sink = tempfile.TemporaryFile(suffix=".parquet")  # noqa: SIM115 - FileResponse closes it
        parquet_write(chunks, sink)
        sink.seek(0)
        return FileResponse(
            sink, as_attachment=True, filename=window.filename, content_type="application/vnd.apache.parquet"
        )
