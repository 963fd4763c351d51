from django.conf import settings
from django.db import models

from common.models import AppendOnlyModel
from engine.quality import QualitySpec
from engine.tiers import Tier, tier_of
from engine.tiers import thresholds as tier_thresholds


class RegisteredModel(models.Model):
    """A model name in the registry (bundle.yaml `name`); versions hang off it."""

    name = models.SlugField(max_length=100, unique=True)
    outcome = models.CharField(max_length=300)
    horizon_hours = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    def production_version(self) -> "ModelVersion | None":
        return self.versions.filter(status=ModelVersion.Status.PRODUCTION).first()


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        PRODUCTION = "production"
        RETIRED = "retired"

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.CANDIDATE)
    model_format = models.CharField(max_length=20)
    # bundle.yaml as parsed, kept whole so the model card can show what the training job said.
    spec = models.JSONField()
    tier_high = models.FloatField()
    tier_medium = models.FloatField()
    # {"model.json": "<sha256>", ...}; files live in MODEL_STORE/<sha256>.
    artifacts = models.JSONField()
    bundle_sha256 = models.CharField(max_length=64)
    background_description = models.TextField(blank=True)
    background_size = models.PositiveIntegerField()
    reference_size = models.PositiveIntegerField()
    # Registration checks with their figures:
    # {"reproduces_expected_risk": {"passed": true, "max_abs_diff": ...}, ...}
    checks = models.JSONField(default=dict)
    # metrics.performance on the reference set: {"model": {...}, "challenger": {...}}, with CIs.
    metrics = models.JSONField(default=dict, blank=True)
    # The promotion gate's figures (checks.promotion_gate), computed at registration.
    gate = models.JSONField(default=dict, blank=True)
    # Per-subgroup figures on the reference set (bundle_subgroups.subgroup_report): unit, shift and
    # bundle.yaml `subgroups`, with intervals and disparity flags. {} for versions registered before.
    subgroups = models.JSONField(default=dict, blank=True)
    registered_at = models.DateTimeField(auto_now_add=True)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    promoted_at = models.DateTimeField(null=True, blank=True)
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["registered_model__name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "version"], name="unique_model_version"),
            models.UniqueConstraint(
                fields=["registered_model"],
                condition=models.Q(status="production"),
                name="one_production_version_per_model",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.registered_model.name} v{self.version}"

    def tier_for(self, risk: float) -> Tier:
        """This version's thresholds applied by the one tier rule (engine.tiers.tier_of)."""
        return tier_of(risk, high=self.tier_high, medium=self.tier_medium)

    @property
    def thresholds(self) -> dict[str, float]:
        """{"high": threshold, "medium": threshold}, worst first (engine.tiers.thresholds)."""
        return tier_thresholds(high=self.tier_high, medium=self.tier_medium)

    def input_features(self) -> list["ModelFeature"]:
        """The model's inputs, in the order the model expects them."""
        return [f for f in self.features.all() if f.decision_time]

    def quality_specs(self, inputs: list["ModelFeature"] | None = None) -> list[QualitySpec]:
        """What engine.quality needs to flag the inputs' values: the accepted range (the schema)
        and the optional expected range of bundle.yaml. `inputs`: input_features(), if at hand."""
        expected = {f["name"]: f.get("expected") for f in (self.spec or {}).get("features", [])}
        return [
            QualitySpec(
                name=f.name,
                label=f.label or f.name,
                unit=f.unit,
                accepted=(f.range_min, f.range_max) if f.range_min is not None else None,
                expected=tuple(expected[f.name]) if expected.get(f.name) else None,
            )
            for f in (self.input_features() if inputs is None else inputs)
            if f.kind == ModelFeature.Kind.NUMERIC
        ]

    def binary_value_labels(self) -> dict[str, dict[int, str]]:
        """What a binary input's 0 and 1 stand for, where bundle.yaml says so: a subgroup on that
        column with `values` (e.g. sex_female: {0: male, 1: female}), so a page can read "no (male)"."""
        binary = {f["name"] for f in (self.spec or {}).get("features", []) if f.get("kind") == "binary"}
        out: dict[str, dict[int, str]] = {}
        for subgroup in (self.spec or {}).get("subgroups") or []:
            values, column = subgroup.get("values") or {}, subgroup.get("column")
            labels = {
                int(float(k)): str(v) for k, v in values.items() if str(k).strip() in {"0", "1", "0.0", "1.0"}
            }
            if column in binary and labels:
                out[column] = labels
        return out

    def fixed_reasons(self) -> dict[str, str]:
        """bundle.yaml's `fixed_reason` per feature: why a what-if may not change it."""
        return {
            f["name"]: str(f.get("fixed_reason") or "")
            for f in (self.spec or {}).get("features", [])
            if f.get("fixed_reason")
        }


class ModelFeature(models.Model):
    class Kind(models.TextChoices):
        NUMERIC = "numeric"
        BINARY = "binary"
        CATEGORICAL = "categorical"

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="features")
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    label = models.CharField(max_length=200)
    unit = models.CharField(max_length=50, blank=True)
    source = models.CharField(max_length=50, blank=True)
    code = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    categories = models.JSONField(default=list, blank=True)
    range_min = models.FloatField(null=True, blank=True)
    range_max = models.FloatField(null=True, blank=True)
    decision_time = models.BooleanField(default=True)
    mutable = models.BooleanField(default=True)

    class Meta:
        ordering = ["version", "position"]
        constraints = [models.UniqueConstraint(fields=["version", "name"], name="unique_feature_per_version")]

    def __str__(self) -> str:
        return self.name


class Promotion(AppendOnlyModel):
    """One promotion of a version to production: who, when, the gate's figures at that moment and,
    when the gate failed, the admin's written reason for overriding it. Never edited or deleted."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="promotions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    promoted_at = models.DateTimeField(auto_now_add=True)
    gate_passed = models.BooleanField()
    # True when the gate failed and an admin promoted anyway; override_reason then says why.
    overridden = models.BooleanField(default=False)
    override_reason = models.TextField(blank=True)
    gate = models.JSONField()

    class Meta:
        ordering = ["promoted_at", "id"]

    def __str__(self) -> str:
        how = "override" if self.overridden else "gate passed"
        return f"{self.version} promoted {self.promoted_at:%Y-%m-%d %H:%M} ({how})"
