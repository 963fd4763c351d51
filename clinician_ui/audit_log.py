"""Reads of the audit log for auditors and admins: who saw which patient, when, through what."""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django import forms
from django.db.models import Q, QuerySet

from patients.models import AuditEvent

PAGE_SIZE = 50
# What the app writes; the search takes any action, these are offered as suggestions.
KNOWN_ACTIONS = (
    "view_worklist",
    "worklist_json",
    "api_cohort",
    "view_alert",
    "view_prediction",
    "expand_low_tier",
    "view_explanation_json",
    "api_explanation",
    "alert_acknowledge",
    "alert_accept",
    "alert_dismiss",
    "alert_escalate",
    "export",
    "view_audit_log",
    "refused",  # a score or alert outside the user's units, asked for and refused (404)
)


class AuditSearchForm(forms.Form):
    user = forms.CharField(required=False, max_length=150, label="User")
    patient = forms.CharField(required=False, max_length=100, label="Patient id")
    action = forms.CharField(required=False, max_length=50, label="Action")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and end < start:
            self.add_error("date_to", "Must be on or after From.")
        return data


@dataclass(frozen=True)
class AuditQuery:
    user: str = ""
    patient: str = ""
    action: str = ""
    date_from: date | None = None
    date_to: date | None = None


def audit_events_search(*, query: AuditQuery) -> QuerySet[AuditEvent]:
    """Newest first. User and patient match exactly (username case-insensitively, the patient's
    external id as the hospital writes it); `date_to` includes that whole day (UTC)."""
    events = AuditEvent.objects.select_related("user", "patient")
    if query.user:
        events = events.filter(user__username__iexact=query.user)
    if query.patient:
        # A record of that patient's own page, or of a list or query that showed them.
        listed = json.dumps(query.patient)
        events = events.filter(Q(patient__external_id=query.patient) | Q(patients__icontains=listed))
    if query.action:
        events = events.filter(action=query.action)
    if query.date_from:
        events = events.filter(at__gte=datetime.combine(query.date_from, time.min, tzinfo=UTC))
    if query.date_to:
        events = events.filter(
            at__lt=datetime.combine(query.date_to + timedelta(days=1), time.min, tzinfo=UTC)
        )
    return events.order_by("-at", "-id")


def patients_shown(events: Iterable[AuditEvent]) -> list:
    """The patients a page of records shows: each record's own patient (a Patient), and the
    external ids a record of a list or query names."""
    shown: list = []
    for event in events:
        if event.patient is not None:
            shown.append(event.patient)
        shown.extend(event.patients or [])
    return shown
