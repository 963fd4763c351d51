from django.conf import settings
from django.db import models

from explanations.models import Alert, Patient, Prediction


class Profile(models.Model):
    class Role(models.TextChoices):
        CLINICIAN = "clinician"
        ADMIN = "admin"
        AUDITOR = "auditor"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    role = models.CharField(max_length=12, choices=Role.choices, default=Role.CLINICIAN)
    # Unit codes a clinician is assigned to; admins and auditors see every unit.
    units = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"


class AppendOnlyError(Exception):
    pass


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: nothing is updated.")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: nothing is deleted.")


class AppendOnlyModel(models.Model):
    """A record of what happened. It is written once and never changed or removed."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only: nothing is updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only: nothing is deleted.")


class AlertAction(AppendOnlyModel):
    class Action(models.TextChoices):
        ACKNOWLEDGE = "acknowledge"
        ACCEPT = "accept"
        DISMISS = "dismiss"
        ESCALATE = "escalate"

    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, related_name="actions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=12)
    action = models.CharField(max_length=12, choices=Action.choices)
    reason = models.CharField(max_length=50)
    comment = models.TextField(blank=True)
    # When this alert was first shown to this user; seconds_to_decision counts from it.
    shown_at = models.DateTimeField()
    acted_at = models.DateTimeField(auto_now_add=True)
    seconds_to_decision = models.FloatField()
    # Set by the client per click; a repeated click with the same key is the same action.
    idempotency_key = models.CharField(max_length=64)

    class Meta:
        ordering = ["acted_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["alert", "user", "idempotency_key"], name="unique_action_click")
        ]


class AlertView(models.Model):
    """When an alert was first shown to a user: the start of their time to decision."""

    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, related_name="views")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    first_shown_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["alert", "user"], name="unique_alert_view")]


class AuditEvent(AppendOnlyModel):
    """Who looked at which patient's data, when, from where, through which page or endpoint."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    prediction = models.ForeignKey(
        Prediction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=50)
    path = models.CharField(max_length=500)
    ip = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]
