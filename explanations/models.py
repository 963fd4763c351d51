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
    tier = models.CharField(max_length=10)
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
    models.When(tier="high", then=models.Value(0)),
    models.When(tier="medium", then=models.Value(1)),
    default=models.Value(2),
)


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
    the alert."""

    patient = models.OneToOneField(
        Patient, primary_key=True, on_delete=models.CASCADE, related_name="current_score"
    )
    prediction = models.OneToOneField(Prediction, on_delete=models.CASCADE, related_name="current_for")
    scored_at = models.DateTimeField()
    # The prediction's unit (what access restricts on), bed, tier and risk.
    unit = models.CharField(max_length=50)
    bed = models.CharField(max_length=50, blank=True)
    tier = models.CharField(max_length=10)
    risk = models.FloatField()
    # The alert the score raised (medium or high tier), and when.
    alert = models.OneToOneField(
        "Alert", null=True, blank=True, on_delete=models.SET_NULL, related_name="current_for"
    )
    alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The alert list: tier order, risk, newest alert, alert id.
            models.Index(
                TIER_ORDER,
                models.F("risk").desc(),
                models.F("alerted_at").desc(),
                models.F("alert"),
                name="current_alert_order",
                condition=models.Q(alert__isnull=False),
            ),
            # The low-tier list: risk, unit, bed, prediction id.
            models.Index(
                models.F("risk").desc(),
                models.F("unit"),
                models.F("bed"),
                models.F("prediction"),
                name="current_low_order",
                condition=models.Q(tier="low"),
            ),
        ]

    def __str__(self) -> str:
        return f"current score of {self.patient_id}: {self.prediction_id}"


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
    # [{"name": "lactate", "shap": 0.41, "points": 0.06}, ...] in model input order: shap in log-odds,
    # points the approximate contribution in probability points (core.probability_points).
    contributions = models.JSONField(null=True, blank=True)
    # Largest |base + sum(shap) - margin| seen for this explanation (log-odds).
    additivity_error = models.FloatField(null=True, blank=True)
    background_size = models.PositiveIntegerField(null=True, blank=True)
    # {"interval", "calibration", "conformal", "ood", "key_features"}: see explanations.selectors.
    uncertainty = models.JSONField(null=True, blank=True)
    # {"k", "events", "neighbours": [...]}: nearest reference patients in SHAP space.
    similar_patients = models.JSONField(null=True, blank=True)
    # {"top_k", "perturbations", "agreement", "unstable", ...}: top-5 agreement under noise.
    stability = models.JSONField(null=True, blank=True)
    # The model abstains (the UI shows why instead of a confident number): far out of
    # distribution, or too many key inputs not measured. The SHAP values are still stored.
    abstain = models.BooleanField(default=False)
    abstain_reason = models.TextField(blank=True)
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


class VersionProfile(models.Model):
    """What a model version's explanations are compared against, built once from its reference set:
    reference SHAP (a .npy in MODEL_STORE named by its sha256), calibration, conformal threshold and
    its measured coverage, the out-of-distribution model, key features and measurement precision."""

    class Status(models.TextChoices):
        BUILDING = "building"
        READY = "ready"
        FAILED = "failed"

    version = models.OneToOneField(ModelVersion, on_delete=models.PROTECT, related_name="explanation_profile")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILDING)
    # JSON-able fitted parameters (see engine.profile.profile_fit).
    params = models.JSONField(default=dict, blank=True)
    # MODEL_STORE/<sha256>: float64 .npy (reference rows x model inputs), log-odds. Never pickled.
    reference_shap_sha256 = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    seconds = models.FloatField(null=True, blank=True)
    built_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"profile of {self.version_id} ({self.status})"


class CohortAggregate(models.Model):
    """Sum, sum of |SHAP| and count of one feature's SHAP values (log-odds) in one slice
    (version, unit, shift, day in HOSPITAL_TIME_ZONE). Updated as explanations become ready, in the
    same transaction; replaced whole by a cohort recompute job."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    feature = models.CharField(max_length=100)
    unit = models.CharField(max_length=50)
    shift = models.CharField(max_length=5)
    day = models.DateField()
    count = models.BigIntegerField(default=0)
    total = models.FloatField(default=0.0)
    total_abs = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["version", "feature", "unit", "shift", "day"], name="unique_cohort_aggregate"
            )
        ]


class CohortSample(models.Model):
    """A bounded sample of explained predictions per slice (version, unit, shift, day): the
    COHORT_SAMPLE_SIZE with the smallest `priority` (a hash of the prediction id), so adding the same
    prediction twice changes nothing and samples of chunks merge exactly (bottom-k sampling).
    Feeds the beeswarm (shap per feature) and dependence plots (value vs shap)."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    unit = models.CharField(max_length=50)
    shift = models.CharField(max_length=5)
    day = models.DateField()
    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="+")
    priority = models.FloatField()
    # Model inputs in model order: encoded values (NaN as null = not measured) and SHAP (log-odds).
    values = models.JSONField()
    shap = models.JSONField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "prediction"], name="unique_cohort_sample")]
        indexes = [
            models.Index(fields=["version", "unit", "shift", "day", "priority"], name="cohort_sample_slice")
        ]


class CohortJob(models.Model):
    """A recompute of a version's cohort SHAP aggregates, in chunks of prediction ids."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        FINALIZING = "finalizing"
        DONE = "done"
        FAILED = "failed"

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    chunk_size = models.PositiveIntegerField()
    chunks_total = models.PositiveIntegerField(default=0)
    rows_total = models.PositiveIntegerField(default=0)
    # Predictions with ids up to this one are recomputed; later ones join the aggregates as their
    # explanations become ready (and are folded in at finalisation).
    max_prediction_id = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # When its chunks were last sent to the queue, or its finalisation began: the sweep resumes
    # the job when nothing has happened since for COHORT_STALL_SECONDS (a message lost with
    # Redis, a worker that died).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"cohort job {self.pk} ({self.status})"


class CohortJobChunk(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    job = models.ForeignKey(CohortJob, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    rows = models.PositiveIntegerField(default=0)
    rows_failed = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="unique_job_chunk")]


class CohortChunkAggregate(models.Model):
    """One chunk's partial aggregates; a re-run of the chunk replaces them."""

    chunk = models.ForeignKey(CohortJobChunk, on_delete=models.CASCADE, related_name="aggregates")
    feature = models.CharField(max_length=100)
    unit = models.CharField(max_length=50)
    shift = models.CharField(max_length=5)
    day = models.DateField()
    count = models.BigIntegerField()
    total = models.FloatField()
    total_abs = models.FloatField()


class CohortChunkSample(models.Model):
    """One chunk's bottom-k sample per slice; a re-run of the chunk replaces it."""

    chunk = models.ForeignKey(CohortJobChunk, on_delete=models.CASCADE, related_name="samples")
    unit = models.CharField(max_length=50)
    shift = models.CharField(max_length=5)
    day = models.DateField()
    prediction_id = models.BigIntegerField()
    priority = models.FloatField()
    values = models.JSONField()
    shap = models.JSONField()
