"""POST /api/v1/alerts/{id}/actions/ (CONTRACT.md section 4): the UI and other clients post the same."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from sightline.api_errors import ApiError

from . import access
from .models import AlertAction
from .selectors import action_reasons, reason_label
from .services import alert_action_record, user_may_act


class AlertActionInput(serializers.Serializer):
    action = serializers.CharField()
    reason = serializers.CharField()
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
    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=AlertActionInput,
        responses={201: AlertActionOutput, 200: AlertActionOutput},
        description="Record a clinician's action on an alert. Append-only; a repeated idempotency_key "
        "returns the first action (200).",
    )
    def post(self, request, alert_id: int) -> Response:
        alert = access.alert_for_user(request.user, alert_id)
        if not user_may_act(request.user):
            raise ApiError(
                code="permission_denied",
                detail="Only the unit's clinicians and admins act on alerts; auditors have read access.",
                status_code=status.HTTP_403_FORBIDDEN,
            )
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
