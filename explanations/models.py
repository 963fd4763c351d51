from django.db import models

from models_registry.models import ModelVersion, RegisteredModel


class Patient(models.Model):
    """A patient as the hospital's scoring service names them. Unit and bed are the latest seen."""

    external_id = models.CharField(max_length=100, unique=True)
    display_name = models.CharField(max_length=200, blank=True)
    unit = models.CharField(max_length=50, db_index=True)
    bed = models.CharField(max_length=50, blank=True)
    # True for the RHC demo cohort, whose names, beds and timestamps are simulated.
    simulated = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.external_id


class Encounter(models.Model):
    external_id = models.CharField(max_length=100, unique=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="encounters")

    def __str__(self) -> str:
        return self.external_id


class Prediction(models.Model):
    """One score of one patient by one model version, as posted by the scoring service."""

    class Source(models.TextChoices):
        REST = "rest"
        BULK = "bulk"
        FHIR = "fhir"

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="+")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    external_id = models.CharField(max_length=200)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="predictions")
    encounter = models.ForeignKey(
        Encounter, null=True, blank=True, on_delete=models.PROTECT, related_name="predictions"
    )
    unit = models.CharField(max_length=50, db_index=True)
    bed = models.CharField(max_length=50, blank=True)
    scored_at = models.DateTimeField(db_index=True)
    risk = models.FloatField()
    # The model's raw output (log-odds) that the SHAP values add up to.
    margin = models.FloatField()
    tier = models.CharField(max_length=10, db_index=True)
    # {"lactate": {"value": 4.2, "unit": "mmol/L", "observed_at": "...", "source": {...}}, "urine": {"value": null}}
    # Every input feature of the version is present; a missing value is stored as null, never imputed.
    features = models.JSONField()
    # sha256 of the canonical request body: the same key with another body is a conflict (409).
    payload_sha256 = models.CharField(max_length=64)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.REST)
    simulated = models.BooleanField(default=False)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "external_id"], name="unique_prediction_key")
        ]
        indexes = [models.Index(fields=["patient", "-scored_at"], name="prediction_patient_recent")]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.risk:.2f})"


class Explanation(models.Model):
    """The stored SHAP explanation of a prediction, computed by a Celery worker."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        READY = "ready"
        FAILED = "failed"

    prediction = models.OneToOneField(Prediction, on_delete=models.PROTECT, related_name="explanation")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    # Expected model output over the background, in log-odds.
    base_value = models.FloatField(null=True, blank=True)
    # [{"name": "lactate", "shap": 0.41}, ...] in model input order, log-odds.
    contributions = models.JSONField(null=True, blank=True)
    # Largest |base + sum(shap) - margin| seen for this explanation (log-odds).
    additivity_error = models.FloatField(null=True, blank=True)
    background_size = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"explanation of {self.prediction_id} ({self.status})"


class Alert(models.Model):
    """A prediction at medium or high tier, put in front of the clinicians of its unit."""

    class State(models.TextChoices):
        NEW = "new"
        ACKNOWLEDGED = "acknowledged"
        ACTIONED = "actioned"

    prediction = models.OneToOneField(Prediction, on_delete=models.PROTECT, related_name="alert")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="alerts")
    unit = models.CharField(max_length=50, db_index=True)
    tier = models.CharField(max_length=10)
    risk = models.FloatField()
    # Derived from the append-only action log: the latest action decides it.
    state = models.CharField(max_length=15, choices=State.choices, default=State.NEW)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"alert {self.pk} {self.tier} {self.risk:.2f}"


class Outcome(models.Model):
    encounter = models.OneToOneField(Encounter, on_delete=models.PROTECT, related_name="outcome")
    outcome = models.BooleanField()
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)


class ServiceToken(models.Model):
    """A scoring service's API token. Only its sha256 is stored; it may ingest and nothing else."""

    name = models.CharField(max_length=100, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
