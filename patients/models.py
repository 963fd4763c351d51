"""The clinical record Sightline keeps: patients, encounters, the scores posted for them, each
patient's current score, the alerts raised, outcomes, and the append-only logs of what clinicians
did and saw. Rows are read through patients.access, never directly by a view.
"""

from django.conf import settings
from django.db import models

from common.models import AppendOnlyModel
from engine.decisions import LANE_ABSTAINS, LANE_OPEN, STATE_LABELS
from engine.tiers import TIERS, Tier
from models_registry.models import ModelVersion, RegisteredModel

# The tier names as Django choices, made from engine.tiers (the one rule and the names): admin
# filters, forms and get_tier_display read them; the stored values are the engine's.
TierChoices = models.TextChoices("TierChoices", [(t.name, (t.value, t.value.capitalize())) for t in TIERS])


class Patient(models.Model):
    """A patient as the hospital's scoring service names them. Unit and bed are the latest seen."""

    external_id = models.CharField(max_length=100, unique=True)
    display_name = models.CharField(max_length=200, blank=True)
    unit = models.CharField(max_length=50, db_index=True)
    bed = models.CharField(max_length=50, blank=True)
    # True for a patient posted as simulated (the demo's: simulated names, beds and timestamps).
    simulated = models.BooleanField(default=False)
    # Demographics, when the scoring service or the FHIR Bundle gives them (CONTRACT section 2): for
    # subgroup monitoring only, never shown on the worklist, pseudonymised in exports. The latest
    # given value is kept; a score without them leaves them as they were.
    sex = models.CharField(max_length=10, blank=True)  # FHIR administrative-gender code
    birth_date = models.DateField(null=True, blank=True)
    age = models.PositiveSmallIntegerField(null=True, blank=True)  # when no birth date is given
    race = models.CharField(max_length=100, blank=True)  # a code (CDC race) or text
    ethnicity = models.CharField(max_length=100, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "explanations_patient"

    def __str__(self) -> str:
        return self.external_id


class Encounter(models.Model):
    external_id = models.CharField(max_length=100, unique=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="encounters")

    class Meta:
        db_table = "explanations_encounter"

    def __str__(self) -> str:
        return self.external_id


def scored_before(prediction: "Prediction") -> models.Q:
    """The scores before this one in a patient's order of scores (scored_at, then id: the order of
    the prediction_patient_latest index)."""
    return models.Q(scored_at__lt=prediction.scored_at) | models.Q(
        scored_at=prediction.scored_at, id__lt=prediction.id
    )


def scored_after(prediction: "Prediction") -> models.Q:
    """The scores after this one, in the same order as scored_before."""
    return models.Q(scored_at__gt=prediction.scored_at) | models.Q(
        scored_at=prediction.scored_at, id__gt=prediction.id
    )


class Prediction(models.Model):
    """One score of one patient by one model version, as posted by the scoring service."""

    class Source(models.TextChoices):
        REST = "rest"
        BULK = "bulk"
        FHIR = "fhir"

    # Indexes are few on purpose: every one is written on every ingested row. The unique key leads
    # with registered_model and prediction_patient_latest with patient, so neither foreign key needs
    # an index of its own; unit and tier are read from the current scores and alerts, not from here.
    registered_model = models.ForeignKey(
        RegisteredModel, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    external_id = models.CharField(max_length=200)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="predictions", db_index=False)
    encounter = models.ForeignKey(
        Encounter, null=True, blank=True, on_delete=models.PROTECT, related_name="predictions"
    )
    unit = models.CharField(max_length=50)
    bed = models.CharField(max_length=50, blank=True)
    scored_at = models.DateTimeField(db_index=True)
    risk = models.FloatField()
    # The model's raw output (log-odds) that the SHAP values add up to.
    margin = models.FloatField()
    tier = models.CharField(max_length=10, choices=TierChoices.choices)
    # {"lactate": {"value": 4.2, "unit": "mmol/L", "observed_at": "...", "source": {...}},
    #  "urine": {"value": null}}
    # Every input feature of the version is present; a missing value is stored as null, never imputed.
    features = models.JSONField()
    # sha256 of the canonical request body: the same key with another body is a conflict (409).
    payload_sha256 = models.CharField(max_length=64)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.REST)
    simulated = models.BooleanField(default=False)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "explanations_prediction"
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "external_id"], name="unique_prediction_key")
        ]
        indexes = [
            # A patient's last scores in the worklist's order (scored_at, then id), read without a sort.
            models.Index(fields=["patient", "-scored_at", "-id"], name="prediction_patient_latest"),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.risk:.2f})"


# The worklist's tier order (high first); the current scores' alert index is built on it, so a
# query must order by this very expression for PostgreSQL to read the index in order.
TIER_ORDER = models.Case(
    *(models.When(tier=tier.value, then=models.Value(rank)) for rank, tier in enumerate(TIERS[:-1])),
    default=models.Value(len(TIERS) - 1),
)
# Within the abstaining lane neither the tier nor the risk ranks an alert (the model calls its own
# score unreliable there): the newest alert comes first.
LANE_TIER_ORDER = models.Case(models.When(lane=LANE_ABSTAINS, then=models.Value(0)), default=TIER_ORDER)
LANE_RISK = models.Case(models.When(lane=LANE_ABSTAINS, then=models.Value(0.0)), default=models.F("risk"))


class CurrentScore(models.Model):
    """Each patient's latest score (latest scored_at, then highest id): the worklist reads the
    patients' current state from here instead of searching every stored prediction.

    Written only by services.current (ingest and bulk refreshes), which moves it forward only, so a
    back-filled older score never replaces it. A table of its own, so saving a Patient never
    overwrites it with a stale value.

    With the pointer it keeps what the worklist filters and sorts on, copied from the prediction
    and its alert in the same statement: each list is an index scan of this small table, and only
    a page's rows are joined to their prediction, patient and alert. Only values that never change
    after ingest are copied; the alert's state changes with clinicians' actions and is read from
    the alert, and only the lane it puts the alert in is kept here."""

    patient = models.OneToOneField(
        Patient, primary_key=True, on_delete=models.CASCADE, related_name="current_score"
    )
    prediction = models.OneToOneField(Prediction, on_delete=models.CASCADE, related_name="current_for")
    scored_at = models.DateTimeField()
    # The prediction's unit (what access restricts on), bed, tier and risk.
    unit = models.CharField(max_length=50)
    bed = models.CharField(max_length=50, blank=True)
    tier = models.CharField(max_length=10, choices=TierChoices.choices)
    risk = models.FloatField()
    # The alert the score raised (medium or high tier), and when.
    alert = models.OneToOneField(
        "Alert", null=True, blank=True, on_delete=models.SET_NULL, related_name="current_for"
    )
    alerted_at = models.DateTimeField(null=True, blank=True)
    # The alert's worklist lane (engine.decisions.lane_of: needs a decision, model abstains,
    # decided), kept by services.current when the alert's state or its explanation changes.
    lane = models.PositiveSmallIntegerField(default=LANE_OPEN)

    class Meta:
        db_table = "explanations_currentscore"
        indexes = [
            # The alert list: lane, tier order, risk, newest alert, alert id.
            models.Index(
                models.F("lane"),
                LANE_TIER_ORDER,
                LANE_RISK.desc(),
                models.F("alerted_at").desc(),
                models.F("alert"),
                name="current_alert_order",
                condition=models.Q(alert__isnull=False),
            ),
            # Each unit's newest score and who lags it (the worklist's patients who left the unit).
            models.Index(fields=["unit", "scored_at"], name="current_unit_scored"),
            # The low-tier list: risk, unit, bed, prediction id.
            models.Index(
                models.F("risk").desc(),
                models.F("unit"),
                models.F("bed"),
                models.F("prediction"),
                name="current_low_order",
                condition=models.Q(tier=Tier.LOW.value),
            ),
        ]

    def __str__(self) -> str:
        return f"current score of {self.patient_id}: {self.prediction_id}"


class Alert(models.Model):
    """A prediction at medium or high tier, put in front of the clinicians of its unit."""

    class State(models.TextChoices):
        # engine.decisions: the one vocabulary of pages, monitoring and exports.
        NEW = "new", STATE_LABELS["new"]
        ACKNOWLEDGED = "acknowledged", STATE_LABELS["acknowledged"]
        ACCEPTED = "accepted", STATE_LABELS["accepted"]
        ESCALATED = "escalated", STATE_LABELS["escalated"]
        DISMISSED = "dismissed", STATE_LABELS["dismissed"]

    prediction = models.OneToOneField(Prediction, on_delete=models.PROTECT, related_name="alert")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="alerts")
    unit = models.CharField(max_length=50, db_index=True)
    tier = models.CharField(max_length=10, choices=TierChoices.choices)
    risk = models.FloatField()
    # Derived from the append-only action log: the latest action decides it.
    state = models.CharField(max_length=15, choices=State.choices, default=State.NEW)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "explanations_alert"

    def __str__(self) -> str:
        return f"alert {self.pk} {self.tier} {self.risk:.2f}"


class Outcome(models.Model):
    encounter = models.OneToOneField(Encounter, on_delete=models.PROTECT, related_name="outcome")
    outcome = models.BooleanField()
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "explanations_outcome"


class AlertAction(AppendOnlyModel):
    class Action(models.TextChoices):
        ACKNOWLEDGE = "acknowledge"
        ACCEPT = "accept"
        DISMISS = "dismiss"
        ESCALATE = "escalate"

    class Channel(models.TextChoices):
        SIGHTLINE = "sightline"  # the alert page or the API
        EHR = "ehr"  # CDS Hooks feedback on the card shown in the EHR

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
    # Where the clinician decided; the outcome-study export says so.
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.SIGHTLINE)

    class Meta:
        db_table = "clinician_ui_alertaction"
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
        db_table = "clinician_ui_alertview"
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
    # A list or a query (a worklist page, a cohort summary): the external ids of the patients it
    # showed, and how many rows it covered (patients.access.audit_list).
    patients = models.JSONField(default=list, blank=True)
    rows = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        db_table = "clinician_ui_auditevent"
        ordering = ["-at", "-id"]
