"""Validation and scoring of posted predictions against their model version's schema."""

import hashlib
import json
import logging
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rest_framework import status

from common.timestamps import iso_utc
from engine import treeshap as core
from explanations.payloads import prediction_shape_check
from models_registry.models import ModelFeature, ModelVersion, RegisteredModel
from models_registry.selectors import version_lookup
from models_registry.serving import ArtifactTampered, EncodingError, serving_model
from patients.models import Prediction
from sightline.api_errors import ApiError

log = logging.getLogger(__name__)

RISK_TOLERANCE = 1e-4


@dataclass(frozen=True)
class IngestResult:
    prediction: Prediction
    created: bool


@dataclass
class Item:
    """One prediction of a request on its way through validation, scoring and storage."""

    index: int
    payload: Any
    data: dict = field(default_factory=dict)
    sha256: str = ""
    registered_model: RegisteredModel | None = None
    version: ModelVersion | None = None
    features: dict = field(default_factory=dict)
    margin: float = math.nan
    risk: float = math.nan
    error: ApiError | None = None
    result: IngestResult | None = None


def payload_sha256(payload: Any) -> str:
    """sha256 of the canonical JSON of a request body (sorted keys, no whitespace)."""
    canonical = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- validation --------------------------------------------------------------------------------


def shape_check(item: Item) -> None:
    """Check the body's shape (explanations.payloads); on success item.data holds it as plain dicts."""
    if not isinstance(item.payload, dict):
        item.error = ApiError(
            code="invalid",
            detail="Each prediction is a JSON object (CONTRACT.md section 2).",
            fields={"body": ["Expected a JSON object."]},
        )
        return
    try:
        item.sha256 = payload_sha256(item.payload)
    except (TypeError, ValueError) as exc:
        item.error = ApiError(code="invalid", detail=f"The body is not plain JSON: {exc}.")
        return
    data, fields = prediction_shape_check(item.payload)
    if fields:
        name, messages = next(iter(fields.items()))
        item.error = ApiError(code="invalid", detail=f"{name}: {messages[0]}", fields=fields)
        return
    item.data = data


@dataclass(frozen=True)
class Schema:
    """A version's features by name, and its model inputs in the model's order."""

    by_name: dict[str, ModelFeature]
    inputs: list[ModelFeature]


# A registered version's features never change (the registry is append-only), so each process
# reads a version's schema once; ingest then costs no feature query and no ORM objects per request.
# Keyed like the serving cache, by id and bundle hash.
_SCHEMAS: dict[tuple[int, str], Schema] = {}


def version_schema(version: ModelVersion) -> Schema:
    key = (version.pk, version.bundle_sha256)
    schema = _SCHEMAS.get(key)
    if schema is None:
        features = list(version.features.order_by("position"))
        schema = Schema(
            by_name={f.name: f for f in features}, inputs=[f for f in features if f.decision_time]
        )
        _SCHEMAS[key] = schema
    return schema


def schema_cache_clear() -> None:
    """Forget every schema read (tests that reuse ids in a new database)."""
    _SCHEMAS.clear()


class Registry:
    """Models and versions looked up once per request (which version is in production can change)."""

    def __init__(self) -> None:
        self.models: dict[str, RegisteredModel | None] = {}
        self.versions: dict[tuple[int, int | None], ModelVersion | None] = {}

    def model(self, name: str) -> RegisteredModel | None:
        if name not in self.models:
            self.models[name] = RegisteredModel.objects.filter(name=name).first()
        return self.models[name]

    def version(self, model: RegisteredModel, number: int | None) -> ModelVersion | None:
        key = (model.pk, number)
        if key not in self.versions:
            version = version_lookup(model=model, version=number)
            if version is not None:
                version.registered_model = model
            self.versions[key] = version
        return self.versions[key]


def model_resolve(item: Item, registry: Registry) -> None:
    name = item.data["model"]
    model = registry.model(name)
    if model is None:
        item.error = ApiError(
            code="unknown_model",
            detail=f"No model named '{name}' is registered.",
            fields={"model": [f"Unknown model '{name}'."]},
        )
        return
    item.registered_model = model


def version_resolve(item: Item, registry: Registry) -> None:
    model = item.registered_model
    number = item.data.get("model_version")
    version = registry.version(model, number)
    if version is None and number is None:
        item.error = ApiError(
            code="no_production_version",
            detail=f"Model '{model.name}' has no production version; promote one or pin model_version.",
            fields={"model": [f"'{model.name}' has no production version."]},
        )
    elif version is None:
        item.error = ApiError(
            code="unknown_model_version",
            detail=f"Model '{model.name}' has no version {number}.",
            fields={"model_version": [f"'{model.name}' has no version {number}."]},
        )
    item.version = version


def _same_unit(posted: str, schema: str) -> bool:
    # NFKC so the micro sign and the Greek mu (µL, μL) are one unit; case matters (mg vs Mg).
    return unicodedata.normalize("NFKC", posted.strip()) == unicodedata.normalize("NFKC", schema)


def _value_check(spec: ModelFeature, value: Any) -> tuple[Any, str | None, str | None]:
    """(value as stored, error code, message) for one non-null value against its feature's schema."""
    if spec.kind == ModelFeature.Kind.CATEGORICAL:
        categories = list(spec.categories or [])
        if isinstance(value, bool) or value not in categories:
            return None, "invalid_value", f"Expected one of {categories}; got {value!r}."
        return value, None, None
    if spec.kind == ModelFeature.Kind.BINARY:
        if isinstance(value, bool):
            return int(value), None, None
        if isinstance(value, (int, float)) and value in (0, 1):
            return int(value), None, None
        return None, "invalid_value", f"Expected true/false (or 1/0); got {value!r}."
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, "invalid_value", f"Expected a number; got {value!r}."
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        finite = False
    if not finite:
        return None, "invalid_value", "Expected a finite number."
    low, high = spec.range_min, spec.range_max
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        unit = f" {spec.unit}" if spec.unit else ""
        return None, "out_of_range", f"{value}{unit} is outside the plausible range {bounds}{unit}."
    return value, None, None


def _entry_check(
    key: str, spec: ModelFeature, entry: dict | None, scored_at, invalid: dict, leakage: dict
) -> tuple[dict | None, str | None]:
    """(entry as stored, or None for a feature not stored; the first error code) of one posted known
    feature; its problems are added to `invalid` and `leakage` under `key`."""
    entry = entry or {}
    value = entry.get("value")
    if not spec.decision_time:
        if value is not None:
            leakage[key] = [f"'{spec.name}' is known only after the decision point and must not be sent."]
        return None, None
    first_code = None
    unit = entry.get("unit")
    if unit not in (None, "") and not _same_unit(unit, spec.unit):
        invalid[f"{key}.unit"] = [f"Expected unit '{spec.unit}'; got '{unit}'."]
        first_code = "unit_mismatch"
    if value is not None:
        value, code, message = _value_check(spec, value)
        if code:
            invalid[f"{key}.value"] = [message]
            first_code = first_code or code
    observed_at = entry.get("observed_at")
    if observed_at is not None and observed_at > scored_at:
        leakage[f"{key}.observed_at"] = [
            f"Observed at {iso_utc(observed_at)}, after the prediction was scored ({iso_utc(scored_at)})."
        ]
    source = entry.get("source")
    stored = {
        "value": value,
        "unit": spec.unit,
        "observed_at": iso_utc(observed_at),
        "source": dict(source) if source else None,
    }
    return stored, first_code


def _features_error(invalid: dict, leakage: dict, first_code: str | None) -> ApiError | None:
    """The 400 naming the first invalid feature, else the 422 naming the first leak, else None."""
    if invalid:
        name, messages = next(iter(invalid.items()))
        return ApiError(code=first_code, detail=f"{name}: {messages[0]}", fields=invalid)
    if leakage:
        name, messages = next(iter(leakage.items()))
        return ApiError(
            code="leakage",
            detail=f"{name}: {messages[0]} Only information available at scoring time may be used.",
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
            fields=leakage,
        )
    return None


def features_check(item: Item) -> None:
    """Check every posted feature against the version's schema; build the stored features."""
    version_features = version_schema(item.version)
    inputs, schema = version_features.inputs, version_features.by_name
    scored_at = item.data["scored_at"]
    invalid: dict[str, list[str]] = {}
    leakage: dict[str, list[str]] = {}
    first_code = None
    stored: dict[str, dict] = {}
    posted = item.data["features"]
    for name, entry in posted.items():
        spec = schema.get(name)
        key = f"features.{name}"
        if spec is None:
            invalid[key] = [
                f"Model '{item.registered_model.name}' v{item.version.version} has no feature '{name}'."
            ]
            first_code = first_code or "unknown_feature"
            continue
        entry_stored, code = _entry_check(key, spec, entry, scored_at, invalid, leakage)
        first_code = first_code or code
        if entry_stored is not None:
            stored[name] = entry_stored
    error = _features_error(invalid, leakage, first_code)
    if error is not None:
        item.error = error
        return
    # Every input of the version is stored; one not sent is "not measured", never imputed.
    for spec in inputs:
        stored.setdefault(spec.name, {"value": None, "unit": spec.unit, "observed_at": None, "source": None})
    item.features = {spec.name: stored[spec.name] for spec in inputs}


def _score_one_by_one(group: Sequence[Item], serving) -> None:

    for item in group:
        try:
            serving.encode({name: f["value"] for name, f in item.features.items()})
        except EncodingError as exc:
            item.error = ApiError(
                code="invalid_value", detail=str(exc), fields={f"features.{exc.feature}.value": [str(exc)]}
            )
            continue
        score([item])


def score(items: Sequence[Item]) -> None:
    """Score every valid item with its registered model: one predict call per model version."""

    by_version: dict[int, list[Item]] = {}
    for item in items:
        by_version.setdefault(item.version.pk, []).append(item)
    for group in by_version.values():
        version = group[0].version
        try:
            serving = serving_model(version)
            rows = np.vstack(
                [serving.encode({name: f["value"] for name, f in item.features.items()}) for item in group]
            )
            margins = np.asarray(serving.predict_margin(rows), dtype=np.float64).ravel()
            # The model is a logistic one: risk is the sigmoid of the margin SHAP explains.
            risks = np.asarray(core.sigmoid(margins), dtype=np.float64)
        except EncodingError:
            # Validation above should have caught it; never a 500 for a value the model refuses.
            _score_one_by_one(group, serving)
            continue
        except ArtifactTampered as exc:
            log.error("model %s cannot score: %s", version, exc)
            error = ApiError(
                code="model_unavailable",
                detail=f"{version} cannot score: {exc} Nothing was stored; the registry admin is needed.",
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
            for item in group:
                item.error = error
            continue
        for item, margin, risk in zip(group, margins, risks, strict=True):
            item.margin, item.risk = float(margin), float(risk)
            posted = item.data.get("risk")
            if posted is not None and abs(posted - item.risk) > RISK_TOLERANCE:
                item.error = ApiError(
                    code="risk_mismatch",
                    detail=(
                        f"The posted risk {posted:.6f} differs from {version}'s output {item.risk:.6f} "
                        f"by more than {RISK_TOLERANCE:g}; an explanation of a different number would be "
                        "wrong. Check the model version and the feature values."
                    ),
                    status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
                    fields={"risk": [f"Posted {posted:.6f}; the registered model gives {item.risk:.6f}."]},
                )
