"""CDS Hooks 2.0 feedback on Sightline's cards, recorded as clinician actions (CONTRACT.md section 4).

``accepted`` is an ``accept``; ``overridden`` is a ``dismiss`` with the override reason's code (one of
the dismiss reasons the card offered) and the user's comment. Feedback itself names no user: the
clinician credited is the one the card was last shown to at or before ``outcomeTimestamp`` (the
first one it was shown to when every showing came later, an EHR clock behind ours), so later
showings never change who is credited. The time to decision runs from when the card was first shown
to them to ``outcomeTimestamp``, and the action is marked as coming from the EHR. A feedback item
sent again carries the same idempotency key, which is the alert's for the EHR channel whoever it
would now be credited to: nothing changes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from clinician_ui.services import alert_action_record
from patients import access
from patients.actions import action_reasons
from patients.models import AlertAction

from .cds_cards import override_reason_system
from .cds_service import CdsError, invalid
from .models import CdsCard, CdsCardShown, RegisteredEhr

ACCEPTED_REASON = "accepted_in_ehr"
OVERRIDDEN_WITHOUT_REASON = "overridden_in_ehr"
MAX_ITEMS = 50


@dataclass
class FeedbackItem:
    field: str
    card: CdsCard
    shown: CdsCardShown
    outcome: str
    reason: str
    comment: str
    decided_at: datetime
    key: str


def _override(raw, field: str, base: str) -> tuple[str, str]:
    if raw is None:
        return OVERRIDDEN_WITHOUT_REASON, ""
    if not isinstance(raw, dict):
        raise invalid(field, "Must be an object with reason (a Coding) and userComment.")
    reason = raw.get("reason")
    comment = raw.get("userComment") or ""
    if not isinstance(comment, str) or len(comment) > 2000:
        raise invalid(f"{field}.userComment", "Must be text of at most 2,000 characters.")
    if reason is None:
        return OVERRIDDEN_WITHOUT_REASON, comment
    codes = {r["code"] for r in action_reasons()["dismiss"]}
    if not isinstance(reason, dict) or reason.get("code") not in codes:
        raise invalid(
            f"{field}.reason.code", f"Must be one of the card's override reasons: {', '.join(sorted(codes))}."
        )
    if reason.get("system") not in (None, override_reason_system(base)):
        raise invalid(f"{field}.reason.system", f"Must be {override_reason_system(base)}.")
    return reason["code"], comment


def _outcome_time(raw, field: str) -> datetime:
    moment = parse_datetime(raw) if isinstance(raw, str) else None
    if moment is None or moment.tzinfo is None:
        raise invalid(field, "Required: an ISO-8601 instant with its time zone, e.g. 2026-11-22T10:40:00Z.")
    if moment > timezone.now() + timedelta(seconds=settings.CDS_JWT_LEEWAY_SECONDS):
        raise invalid(field, "Is in the future.", status=422)
    return moment


def _credited_showing(card: CdsCard, decided: datetime) -> CdsCardShown | None:
    """The showing whose clinician made the decision: the last at or before it, else the first."""
    showings = CdsCardShown.objects.filter(card=card).select_related("user")
    before = showings.filter(shown_at__lte=decided).order_by("-shown_at", "-id").first()
    return before or showings.order_by("shown_at", "id").first()


def _decided_at(moment: datetime, card: CdsCard, shown: CdsCardShown) -> datetime:
    """When the clinician decided: ``outcomeTimestamp``, but never before the card was first shown
    to them (an EHR clock behind ours), so the time to decision is never negative."""
    first = CdsCardShown.objects.filter(card=card, user=shown.user).order_by("shown_at", "id").first()
    return max(moment, first.shown_at)


def _item_parse(raw, index: int, *, ehr: RegisteredEhr, service_id: str, base: str) -> FeedbackItem:
    field = f"feedback[{index}]"
    if not isinstance(raw, dict):
        raise invalid(field, "Must be an object with card, outcome and outcomeTimestamp.")
    try:
        card_id = uuid.UUID(str(raw.get("card")))
    except ValueError:
        raise invalid(f"{field}.card", "Must be the uuid of a card this service returned.") from None
    card = (
        CdsCard.objects.filter(uuid=card_id, ehr=ehr, service_id=service_id).select_related("alert").first()
    )
    if card is None:
        raise invalid(
            f"{field}.card", "No card with this uuid was returned to this EHR by this service.", 404
        )
    if card.alert is None:
        raise invalid(f"{field}.card", "A low-tier card has no alert to accept or override.", 422)
    moment = _outcome_time(raw.get("outcomeTimestamp"), f"{field}.outcomeTimestamp")
    shown = _credited_showing(card, moment)
    if shown is None:
        raise invalid(f"{field}.card", "This card was not shown to a user mapped to Sightline.", 422)
    outcome = raw.get("outcome")
    if outcome not in ("accepted", "overridden"):
        raise invalid(f"{field}.outcome", "Must be 'accepted' or 'overridden'.")
    if outcome == "accepted":
        reason, comment = ACCEPTED_REASON, ""
    else:
        reason, comment = _override(raw.get("overrideReason"), f"{field}.overrideReason", base)
    decided = _decided_at(moment, card, shown)
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    key = hashlib.sha256(f"cds-feedback:{canonical}".encode()).hexdigest()
    return FeedbackItem(field, card, shown, outcome, reason, comment, decided, key)


def feedback_record(
    *, body, ehr: RegisteredEhr, service_id: str, base: str
) -> list[tuple[AlertAction, bool]]:
    """Validate every item, then record them all (or nothing): [(action, created), ...]."""
    items = body.get("feedback") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise invalid("feedback", "Required: a non-empty list of feedback items.")
    if len(items) > MAX_ITEMS:
        raise invalid("feedback", f"At most {MAX_ITEMS} items per request.", 413)
    parsed = [_item_parse(raw, i, ehr=ehr, service_id=service_id, base=base) for i, raw in enumerate(items)]
    recorded = []
    with transaction.atomic():
        for item in parsed:
            user = item.shown.user
            alert, may_act = access.alert_rw_for_user(user, item.card.alert_id)
            if not may_act:
                raise CdsError(403, "permission_denied", f"{user.username} may not act on alerts (role).")
            recorded.append(
                alert_action_record(
                    alert=alert,
                    user=user,
                    action=AlertAction.Action.ACCEPT
                    if item.outcome == "accepted"
                    else AlertAction.Action.DISMISS,
                    reason=item.reason,
                    comment=item.comment,
                    idempotency_key=item.key,
                    channel=AlertAction.Channel.EHR,
                    decided_at=item.decided_at,
                )
            )
    return recorded
