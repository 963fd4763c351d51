"""The explanation profile of a model version: built once (at registration, or by the first worker
that needs it), stored as JSON parameters plus a content-addressed .npy, cached per process."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from engine import profile as engine
from explanations.models import VersionProfile
from models_registry.models import ModelVersion
from models_registry.serving import serving_model

log = logging.getLogger(__name__)

_LOCK = threading.RLock()
_CACHE: dict[tuple[int, str, str], engine.LoadedProfile] = {}
# Fitted (params, reference SHAP) per (bundle sha256, options): the same artifacts and options
# always fit the same profile, so a process registering the same bundle again reuses the fit.
_FITS: dict[tuple[str, str], tuple[dict, np.ndarray]] = {}


class ProfileUnavailable(RuntimeError):
    """The profile could not be built (its reason is stored on the VersionProfile)."""


def engine_options() -> dict:
    return {**engine.DEFAULTS, **getattr(settings, "EXPLANATION_ENGINE", {})}


def _store_path(sha256: str) -> Path:
    return Path(settings.MODEL_STORE) / sha256


def _array_store(array: np.ndarray) -> str:
    """Write an array as .npy to MODEL_STORE/<sha256> (temp file + rename); return the sha256."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float64), allow_pickle=False)
    data = buffer.getvalue()
    sha256 = hashlib.sha256(data).hexdigest()
    target = _store_path(sha256)
    if target.is_file():
        return sha256
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, target)
    return sha256


def _array_present(sha256: str) -> bool:
    path = _store_path(sha256)
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256


def _array_load(sha256: str) -> np.ndarray:
    path = _store_path(sha256)
    data = path.read_bytes() if path.is_file() else b""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ProfileUnavailable(f"The stored reference SHAP matrix {path} is missing or changed.")
    return np.load(io.BytesIO(data), allow_pickle=False)


def input_specs(version: ModelVersion) -> list[dict]:
    """bundle.yaml's feature entries of the model inputs, in model order (with `precision` if given)."""
    by_name = {f["name"]: f for f in version.spec.get("features", [])}
    out = []
    for feature in version.input_features():
        spec = dict(by_name.get(feature.name, {}))
        spec.setdefault("kind", feature.kind)
        spec.setdefault("unit", feature.unit)
        out.append(spec)
    return out


def _ranges(version: ModelVersion) -> tuple[np.ndarray, np.ndarray]:
    features = version.input_features()
    lower = np.array([np.nan if f.range_min is None else f.range_min for f in features], dtype=np.float64)
    upper = np.array([np.nan if f.range_max is None else f.range_max for f in features], dtype=np.float64)
    return lower, upper


def version_profile_build(*, version: ModelVersion) -> VersionProfile:
    """Build the version's profile once; return it (ready or failed). Idempotent and safe to call
    from several processes: the first takes a row lock and builds, the others wait and read it.

    Queued when the registry announces a version (explanations.receivers), by the sweep for a
    version still without one, and run lazily by the first explanation that needs it.
    """

    VersionProfile.objects.get_or_create(version=version)
    with transaction.atomic():
        profile = VersionProfile.objects.select_for_update().get(version=version)
        if profile.status == VersionProfile.Status.READY and _array_present(profile.reference_shap_sha256):
            return profile
        # Not built, failed before, or its matrix is gone from MODEL_STORE (a moved store): build.
        started = time.perf_counter()
        try:
            serving = serving_model(version)
            options = engine_options()
            specs = input_specs(version)
            fit_key = (version.bundle_sha256, json.dumps([options, specs], sort_keys=True, default=str))
            if fit_key not in _FITS:
                _FITS[fit_key] = engine.profile_fit(
                    explainer=serving.explainer,
                    reference=serving.reference,
                    feature_names=serving.feature_names,
                    features=specs,
                    label=version.spec["reference"]["label"],
                    predict_risk=serving.predict_risk,
                    options=options,
                )
            params, reference_shap = _FITS[fit_key]
            profile.reference_shap_sha256 = _array_store(reference_shap)
        except Exception as exc:
            log.exception("profile of %s could not be built", version)
            profile.status = VersionProfile.Status.FAILED
            profile.error = f"{type(exc).__name__}: {exc}"
        else:
            profile.params = params
            profile.status = VersionProfile.Status.READY
            profile.error = ""
        profile.seconds = time.perf_counter() - started
        profile.built_at = timezone.now()
        profile.save()
    return profile


def versions_without_profile() -> list[int]:
    """Ids of the versions in production or candidacy whose profile was never built (the queued
    build at registration was lost, e.g. to a broker outage): the sweep queues their build."""
    return list(
        ModelVersion.objects.exclude(status=ModelVersion.Status.RETIRED)
        .filter(explanation_profile__isnull=True)
        .values_list("pk", flat=True)
    )


def version_profile_loaded(version: ModelVersion) -> engine.LoadedProfile:
    """The version's profile in memory (built first if needed), cached per process."""

    profile = VersionProfile.objects.filter(version=version, status=VersionProfile.Status.READY).first()
    if profile is not None:
        cached = _CACHE.get((version.pk, version.bundle_sha256, profile.reference_shap_sha256))
        if cached is not None:
            return cached
    if profile is None or not _array_present(profile.reference_shap_sha256):
        profile = version_profile_build(version=version)
        if profile.status != VersionProfile.Status.READY:
            raise ProfileUnavailable(f"The explanation profile of {version} failed: {profile.error}")
    key = (version.pk, version.bundle_sha256, profile.reference_shap_sha256)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            serving = serving_model(version)
            lower, upper = _ranges(version)
            cached = engine.profile_load(
                profile.params,
                _array_load(profile.reference_shap_sha256),
                serving.reference,
                version.spec["reference"]["label"],
                lower,
                upper,
            )
            _CACHE[key] = cached
        return cached


def profile_cache_clear() -> None:
    with _LOCK:
        _CACHE.clear()
        _STABILITY.clear()


_STABILITY: dict[tuple[int, str, int], object] = {}


def stability_explainer(version: ModelVersion, serving, size: int):
    """The version's SHAP engine over a seeded `size`-row subsample of the background, for the stability
    re-explanations only (the stored SHAP values always use the whole background). The patient is
    re-explained with it too, so perturbed and unperturbed rankings are compared like with like."""

    key = (version.pk, version.bundle_sha256, size)
    explainer = _STABILITY.get(key)
    if explainer is None:
        with _LOCK:
            explainer = _STABILITY.get(key)
            if explainer is None:
                background = serving.background
                if len(background) > size:
                    rng = np.random.default_rng(engine.DEFAULTS["seed"])
                    background = background[np.sort(rng.choice(len(background), size, replace=False))]
                explainer = serving.engine_over(background)
                _STABILITY[key] = explainer
    return explainer
