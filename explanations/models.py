from django.db import models

from models_registry.models import ModelVersion
from patients.models import Prediction


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
    # [{"feature", "label", "value", "kind", "text"}]: values read as impossible or as recording
    # artefacts (engine.quality), shown beside the value; null for explanations stored before.
    quality_flags = models.JSONField(null=True, blank=True)
    abstain = models.BooleanField(default=False)
    abstain_reason = models.TextField(blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"explanation of {self.prediction_id} ({self.status})"


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
    # Seconds per stage of the last run: fetch (read and decode from the database), encode, shap,
    # aggregate (the chunk's sums and sample), write (its rows, in one transaction).
    stage_seconds = models.JSONField(default=dict, blank=True)
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
