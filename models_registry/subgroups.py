"""Per-subgroup figures of a registered version: computed by a worker right after registration
(tasks.version_subgroups_task), stored in ModelVersion.subgroups with the `subgroup_disparity` check.

ModelVersion.subgroups is {"status": "pending" | "running" | "ready" | "failed", ...}; {} for a
version registered before subgroup reporting existed (the sweep computes it too).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.timestamps import iso_utc
from engine import treeshap as core
from models_registry.bundle_spec import parse_features, parse_subgroups
from models_registry.bundle_subgroups import SubgroupSettings, all_subgroups, subgroup_report
from models_registry.models import ModelVersion
from models_registry.serving import serving_model

log = logging.getLogger(__name__)

PENDING, RUNNING, READY, FAILED = "pending", "running", "ready", "failed"


def subgroup_settings() -> SubgroupSettings:
    """Bootstrap resamples, size floor and disparity margins (settings.SUBGROUP_*)."""
    return SubgroupSettings(
        n_boot=settings.SUBGROUP_BOOTSTRAP_RESAMPLES,
        min_size=settings.SUBGROUP_MIN_SIZE,
        min_events=settings.SUBGROUP_MIN_EVENTS,
        calibration_margin=settings.SUBGROUP_CALIBRATION_MARGIN,
        alert_ratio_floor=settings.SUBGROUP_ALERT_RATIO_FLOOR,
    )


def _due() -> Q:
    return Q(subgroups={}) | Q(subgroups__status=PENDING)


def version_subgroups_compute(*, version_id: int) -> str:
    """Compute and store the version's subgroup figures unless another worker has them or has
    claimed them; returns the status the version is left in."""
    started = timezone.now()
    claimed = (
        ModelVersion.objects.filter(pk=version_id)
        .filter(_due())
        .update(subgroups={"status": RUNNING, "started_at": iso_utc(started)})
    )
    if not claimed:
        version = ModelVersion.objects.filter(pk=version_id).only("subgroups").first()
        return (version.subgroups or {}).get("status", "missing") if version else "missing"
    version = ModelVersion.objects.select_related("registered_model").get(pk=version_id)
    try:
        report, check = _report(version)
    except Exception as exc:  # stored with its reason and shown on the card; never retried blindly
        log.exception("subgroup figures of %s could not be computed", version)
        ModelVersion.objects.filter(pk=version_id).update(
            subgroups={"status": FAILED, "error": f"{type(exc).__name__}: {exc}"}
        )
        return FAILED
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version_id)
        version.subgroups = {
            "status": READY,
            "computed_at": iso_utc(timezone.now()),
            "seconds": round((timezone.now() - started).total_seconds(), 1),
            **report,
        }
        version.checks = {**(version.checks or {}), "subgroup_disparity": check}
        version.save(update_fields=["subgroups", "checks"])
    return READY


def _report(version: ModelVersion) -> tuple[dict, dict]:
    serving = serving_model(version)
    spec = version.spec
    features = parse_features(spec["features"])
    inputs = serving.reference[serving.feature_names].to_numpy(dtype=np.float64)
    return subgroup_report(
        key=version.bundle_sha256,
        subgroups=all_subgroups(parse_subgroups(spec.get("subgroups"), features)),
        features=features,
        reference=serving.reference,
        label=spec["reference"]["label"],
        tiers=version.thresholds,
        shap_of=lambda: core.explain(serving.explainer, serving.model.prepare(inputs)).values,
        input_names=serving.feature_names,
        settings=subgroup_settings(),
    )


def versions_subgroups_due() -> list[int]:
    """Versions whose figures are still to compute: never queued (registered before), a lost
    message, or a worker that died while running (running longer than SUBGROUP_STUCK_SECONDS)."""
    stuck_before = timezone.now() - timedelta(seconds=settings.SUBGROUP_STUCK_SECONDS)
    for version in ModelVersion.objects.filter(subgroups__status=RUNNING).only("subgroups"):
        started = version.subgroups.get("started_at")
        if started is None or started < iso_utc(stuck_before):
            ModelVersion.objects.filter(pk=version.pk, subgroups=version.subgroups).update(
                subgroups={"status": PENDING}
            )
    return list(ModelVersion.objects.filter(_due()).order_by("pk").values_list("pk", flat=True))
