"""Writes of the clinician UI: first sight of an alert and the append-only action log."""

import uuid

from django.db import transaction
from django.utils import timezone
from rest_framework import status

from accounts import permissions
from engine.decisions import state_after
from explanations.services.current import current_lanes_refresh
from patients.models import Alert, AlertAction, AlertView
from sightline.api_errors import ApiError


def alert_view_record(*, alert: Alert, user) -> AlertView:
    """When this user first saw this alert: the start of their time to decision. Later views keep it."""
    view, _ = AlertView.objects.get_or_create(alert=alert, user=user)
    return view


def _key_conflict(existing: AlertAction) -> ApiError:
    return ApiError(
        code="idempotency_conflict",
        detail=(
            f"This idempotency_key already recorded a {existing.action} ({existing.reason}) on this alert; "
            "a different action needs a new key."
        ),
        status_code=status.HTTP_409_CONFLICT,
        fields={"idempotency_key": ["Already used with a different action, reason or comment."]},
    )


def alert_action_record(
    *,
    alert: Alert,
    user,
    action: str,
    reason: str,
    comment: str = "",
    idempotency_key: str | None = None,
    channel: str = AlertAction.Channel.SIGHTLINE,
    decided_at=None,
) -> tuple[AlertAction, bool]:
    """Append one action to the alert's log and return it with `created`.

    The caller has validated `action` and `reason` and checked access. With an idempotency key
    that this user already used on this alert, nothing is written and the first action is
    returned (created=False): a double click is one action. On the EHR channel the key is the
    alert's, whoever the action is credited to: a CDS Hooks feedback item delivered again is the
    first action even if another clinician has been shown the card since. The same key with
    another action, reason or comment is a 409 (ApiError idempotency_conflict) and writes
    nothing. Without a key
    every call is a new action. seconds_to_decision counts from when the alert was first shown
    to this user; a user who acts without ever having been shown it (an API client) starts the
    clock now. `decided_at` is when the decision was made if the caller knows it (CDS Hooks
    feedback's outcomeTimestamp); else now. `channel` says where it was made (the EHR's card, or
    Sightline itself).
    """
    with transaction.atomic():
        # Serialises concurrent actions on one alert, so two identical clicks cannot both insert.
        locked = Alert.objects.select_for_update().get(pk=alert.pk)
        if idempotency_key:
            same_key = AlertAction.objects.filter(alert=locked, idempotency_key=idempotency_key)
            if channel == AlertAction.Channel.EHR:
                same_key = same_key.filter(channel=channel)
            else:
                same_key = same_key.filter(user=user)
            existing = same_key.order_by("id").first()
            if existing is not None:
                if (existing.action, existing.reason, existing.comment) != (action, reason, comment):
                    raise _key_conflict(existing)
                return existing, False
        view = alert_view_record(alert=locked, user=user)
        now = decided_at or timezone.now()
        record = AlertAction.objects.create(
            alert=locked,
            user=user,
            role=permissions.user_role(user) or "",
            action=action,
            reason=reason,
            comment=comment,
            shown_at=view.first_shown_at,
            seconds_to_decision=max(0.0, (now - view.first_shown_at).total_seconds()),
            idempotency_key=idempotency_key or uuid.uuid4().hex,
            channel=channel,
        )
        Alert.objects.filter(pk=locked.pk).update(state=state_after(action))
        # A decided alert moves down the worklist to the decided lane (a later acknowledge moves it back).
        current_lanes_refresh(alert=locked)
    alert.state = state_after(action)
    return record, True
