"""Registry writes: registering a bundle and promoting a version through the promotion gate."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.permissions import may_manage_registry
from models_registry.bundle import Bundle, read_bundle, sha256_bytes
from models_registry.bundle_rules import MAX_UNCOMPRESSED_BYTES
from models_registry.models import ModelFeature, ModelVersion, Promotion, RegisteredModel
from models_registry.signals import version_registered

log = logging.getLogger(__name__)

# An override of the promotion gate must say why in words, not "ok".
MIN_OVERRIDE_REASON_CHARS = 20


class PromotionRefused(Exception):
    """The promotion gate fails (or was never computed) and no admin override was given."""

    def __init__(self, message: str, *, gate: dict) -> None:
        super().__init__(message)
        self.gate = gate


def artifact_store_path(sha256: str) -> Path:
    return Path(settings.MODEL_STORE) / sha256


def _artifact_store(*, data: bytes, sha256: str) -> Path:
    """Write data to MODEL_STORE/<sha256> (temp file + rename); reuse an existing identical file."""
    target = artifact_store_path(sha256)
    if target.is_file() and sha256_bytes(target.read_bytes()) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{sha256[:12]}-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def _max_unpacked_bytes() -> int:
    return int(getattr(settings, "MODEL_BUNDLE_MAX_UNPACKED_BYTES", MAX_UNCOMPRESSED_BYTES))


def model_register_upload(
    *, upload, promote: bool = False, user=None, override_reason: str | None = None
) -> tuple[ModelVersion, bool]:
    """model_register for a bundle .zip received as an upload (a Django UploadedFile): written to a
    temporary file chunk by chunk, never held whole in memory."""
    with tempfile.TemporaryDirectory(prefix="sightline-upload-") as tmp:
        archive = Path(tmp) / "bundle.zip"
        with archive.open("wb") as handle:
            for chunk in upload.chunks():
                handle.write(chunk)
        return model_register(path=archive, promote=promote, user=user, override_reason=override_reason)


def model_register(
    *, path: Path | str, promote: bool = False, user=None, override_reason: str | None = None
) -> tuple[ModelVersion, bool]:
    """Verify the bundle at `path` (directory or .zip) and register it as the next version.

    Returns (version, created). A bundle identical to an already registered version of the same
    model (same artifact hashes) returns that version with created=False; with promote=True it is
    then promoted if it is not production already. Raises BundleError and stores nothing when the
    bundle fails a check. With promote=True, raises PromotionRefused and stores nothing when the
    promotion gate fails and no admin override (user + override_reason) is given.
    """
    bundle = read_bundle(path, max_unpacked_bytes=_max_unpacked_bytes())
    # Files first, outside the transaction: content-addressed, so a rolled-back registration
    # leaves at most an unreferenced file that a later identical registration reuses.
    for name, data in bundle.files.items():
        _artifact_store(data=data, sha256=bundle.artifacts[name])
    with transaction.atomic():
        registered, _ = RegisteredModel.objects.select_for_update().get_or_create(
            name=bundle.name,
            defaults={"outcome": bundle.spec["outcome"], "horizon_hours": bundle.spec["horizon_hours"]},
        )
        existing = registered.versions.filter(bundle_sha256=bundle.bundle_sha256).first()
        if existing is not None:
            if promote and existing.status != ModelVersion.Status.PRODUCTION:
                model_version_promote(version=existing, user=user, override_reason=override_reason)
                existing.refresh_from_db()
            return existing, False
        version = _version_create(registered=registered, bundle=bundle, user=user)
        # Listeners (the explanation side) act once the version is committed.
        transaction.on_commit(lambda: version_registered.send(sender=ModelVersion, version=version))
        if promote:
            model_version_promote(version=version, user=user, override_reason=override_reason)
            version.refresh_from_db()
    return version, True


def _version_create(*, registered: RegisteredModel, bundle: Bundle, user) -> ModelVersion:
    number = (registered.versions.aggregate(top=Max("version"))["top"] or 0) + 1
    spec = bundle.spec
    version = ModelVersion.objects.create(
        registered_model=registered,
        version=number,
        model_format=spec["model"]["format"],
        spec=spec,
        tier_high=float(spec["tiers"]["high"]),
        tier_medium=float(spec["tiers"]["medium"]),
        artifacts=bundle.artifacts,
        bundle_sha256=bundle.bundle_sha256,
        background_description=str(spec["background"].get("description") or ""),
        background_size=len(bundle.background),
        reference_size=len(bundle.reference),
        checks=bundle.checks,
        metrics=bundle.metrics,
        gate=bundle.gate,
        subgroups={"status": "pending"},
        registered_by=user,
    )
    ModelFeature.objects.bulk_create(
        ModelFeature(
            version=version,
            position=position,
            name=feature["name"],
            label=feature["label"],
            unit=feature["unit"],
            source=feature["source"],
            code=feature["code"],
            kind=feature["kind"],
            categories=feature["categories"],
            range_min=feature["range"][0] if feature["range"] else None,
            range_max=feature["range"][1] if feature["range"] else None,
            decision_time=feature["decision_time"],
            mutable=feature["mutable"],
        )
        for position, feature in enumerate(bundle.features)
    )
    return version


@transaction.atomic
def model_version_promote(
    *, version: ModelVersion, user=None, override_reason: str | None = None
) -> ModelVersion:
    """Make `version` its model's production version; the previous production version is retired.

    Allowed when the promotion gate computed at registration passed. Otherwise only an admin with a
    written `override_reason` may promote; the override is kept in the append-only Promotion record
    with the gate's figures. Raises PromotionRefused naming the failed criteria and their figures.
    """
    gate = version.gate or {}
    passed = bool(gate.get("passed"))
    overridden = False
    if not passed:
        message = gate.get("detail") or (
            f"{version} has no promotion gate figures (registered before the gate existed); "
            "re-register its bundle to compute them"
        )
        reason = (override_reason or "").strip()
        if not reason:
            raise PromotionRefused(
                f"{version} cannot be promoted. {message} An admin may override with a written reason.",
                gate=gate,
            )
        if not may_manage_registry(user):
            raise PromotionRefused(
                f"{version} cannot be promoted. {message} Only an admin may override the gate.", gate=gate
            )
        if len(reason) < MIN_OVERRIDE_REASON_CHARS:
            raise PromotionRefused(
                f"{version} cannot be promoted: the override reason must explain in at least "
                f"{MIN_OVERRIDE_REASON_CHARS} characters why the gate is overridden.",
                gate=gate,
            )
        overridden = True
    RegisteredModel.objects.select_for_update().get(pk=version.registered_model_id)
    # .update() on the ModelVersion queryset is fine: versions are not append-only, promotions are.
    ModelVersion.objects.filter(
        registered_model_id=version.registered_model_id, status=ModelVersion.Status.PRODUCTION
    ).exclude(pk=version.pk).update(status=ModelVersion.Status.RETIRED)
    version.status = ModelVersion.Status.PRODUCTION
    version.promoted_at = timezone.now()
    version.promoted_by = user
    version.save(update_fields=["status", "promoted_at", "promoted_by"])
    Promotion.objects.create(
        version=version,
        user=user,
        gate_passed=passed,
        overridden=overridden,
        override_reason=(override_reason or "").strip() if overridden else "",
        gate=gate,
    )
    return version
