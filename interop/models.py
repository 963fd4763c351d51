"""What Sightline keeps to work inside an EHR (CONTRACT.md section 8): the EHRs registered to call the
CDS Hooks service and launch the SMART app, the CDS Hooks tokens already used (replay protection),
which Sightline user each EHR practitioner is, how each model's service treats low-tier patients,
and the cards shown (so that feedback finds its alert and its clinician).
"""

from django.conf import settings
from django.db import models

from engine.tiers import Tier
from interop.ehr_jwt import DEFAULT_ALGORITHMS
from models_registry.models import RegisteredModel
from patients.models import Alert, Prediction


def _default_algorithms() -> list[str]:
    return list(DEFAULT_ALGORITHMS)


class RegisteredEhr(models.Model):
    """An EHR (its FHIR base URL is the ``iss`` of its tokens and launches) and the keys it signs with.

    ``jwks`` is the key set tokens are verified with. With ``jwks_url`` it was fetched from that
    registered URL by ``register_ehr`` (at registration or ``--refresh``), never at request time and
    never from a URL a token names. A revoked EHR may neither call nor launch."""

    iss = models.URLField(max_length=500, unique=True)
    name = models.CharField(max_length=200, blank=True)
    jwks = models.JSONField()
    jwks_url = models.URLField(max_length=500, blank=True)
    jwks_fetched_at = models.DateTimeField(null=True, blank=True)
    algorithms = models.JSONField(default=_default_algorithms)
    # The client id Sightline was given when registered as a SMART app in this EHR.
    client_id = models.CharField(max_length=200, blank=True)
    # Origins (scheme://host:port) besides the iss's own where its SMART configuration may place the
    # token endpoint and JWKS (register_ehr --smart-origin); anything else there is refused.
    smart_origins = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "registered EHR"

    def __str__(self) -> str:
        return self.name or self.iss

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class SeenJti(models.Model):
    """A CDS Hooks token already used: (iss, jti) may be seen once. Rows past ``exp`` (plus the clock
    leeway) can no longer be replayed, since the token has expired, and may be pruned."""

    iss = models.CharField(max_length=500)
    jti = models.CharField(max_length=255)
    exp = models.DateTimeField(db_index=True)
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["iss", "jti"], name="unique_seen_jti")]


class PractitionerMapping(models.Model):
    """An EHR user (its fhirUser, e.g. "Practitioner/123") is this Sightline user, as an admin decided.

    The mapping only says who the person is: what they may see and do is their own Sightline
    role and units (accounts.permissions). A mapping never makes anyone an admin."""

    ehr = models.ForeignKey(RegisteredEhr, on_delete=models.CASCADE, related_name="practitioners")
    fhir_user = models.CharField(
        max_length=300, help_text='A relative reference to the EHR user, e.g. "Practitioner/123".'
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ehr", "fhir_user"], name="unique_practitioner_mapping")
        ]

    def __str__(self) -> str:
        return f"{self.fhir_user} @ {self.ehr} -> {self.user}"


class CdsServiceSetting(models.Model):
    """How a model's CDS service treats patients below the medium tier: no card (the default), or an
    info card, so the risk-tiered display of the worklist carries into the EHR."""

    class LowTier(models.TextChoices):
        NO_CARD = "none", "No card"
        INFO_CARD = "info", "An info card"

    registered_model = models.OneToOneField(
        RegisteredModel, on_delete=models.CASCADE, related_name="cds_setting"
    )
    low_tier = models.CharField(max_length=10, choices=LowTier.choices, default=LowTier.NO_CARD)

    def __str__(self) -> str:
        return f"{self.registered_model}: low tier {self.get_low_tier_display().lower()}"

    @staticmethod
    def card_tiers(registered_model: RegisteredModel) -> set[str]:
        setting = CdsServiceSetting.objects.filter(registered_model=registered_model).first()
        tiers = {Tier.MEDIUM.value, Tier.HIGH.value}
        if setting is not None and setting.low_tier == CdsServiceSetting.LowTier.INFO_CARD:
            tiers.add(Tier.LOW.value)
        return tiers


class CdsCard(models.Model):
    """A card Sightline answered, under its stable uuid (one per alert, or per score when a low-tier
    score has no alert). Feedback names the card by this uuid."""

    uuid = models.UUIDField(unique=True)
    service_id = models.CharField(max_length=100)
    ehr = models.ForeignKey(RegisteredEhr, on_delete=models.PROTECT, related_name="+")
    prediction = models.ForeignKey(Prediction, on_delete=models.PROTECT, related_name="+")
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    first_shown_at = models.DateTimeField(auto_now_add=True)


class CdsCardShown(models.Model):
    """Which Sightline user (mapped from the call's ``userId``) a card was shown to, and when first:
    feedback is recorded as that clinician's action, timed from here."""

    card = models.ForeignKey(CdsCard, on_delete=models.CASCADE, related_name="shown")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    hook_instance = models.CharField(max_length=100)
    shown_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-shown_at", "-id"]
