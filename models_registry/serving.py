"""Serving a registered model version: the one place artifacts are loaded from MODEL_STORE.

Ingest (risk, tier) and the SHAP task use `serving_model(version)`; the interface below
(feature_names, encode, predict_margin, predict_risk, background, reference, explainer) is what
they are written against, the same for every model format (XGBoost, LightGBM, scikit-learn):
`predict_margin` is always the log-odds that `explainer` explains.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import NoneType
from typing import Any

import numpy as np
import pandas as pd

from engine import treeshap as core
from models_registry.bundle import sha256_bytes
from models_registry.formats import ModelFormatError, TreeModel, load_model
from models_registry.models import ModelVersion
from models_registry.services import artifact_store_path

_TRUE = {True, "true", "True", "1"}  # True == 1 == 1.0 in a set
_FALSE = {False, "false", "False", "0"}  # False == 0 == 0.0


class ArtifactTampered(RuntimeError):
    """A stored artifact no longer has the sha256 recorded at registration: the version refuses to serve."""


class EncodingError(ValueError):
    """A value the model cannot take (unknown category, not a number); names the feature."""

    def __init__(self, feature: str, message: str) -> None:
        super().__init__(message)
        self.feature = feature


@dataclass
class _FeatureCodec:
    name: str
    kind: str
    categories: list[str]


@dataclass
class ServingModel:
    version_id: int
    feature_names: list[str]
    model: TreeModel
    background: np.ndarray
    reference: pd.DataFrame
    codecs: list[_FeatureCodec] = field(repr=False)
    _explainer: Any = field(default=None, init=False, repr=False)

    @property
    def booster(self) -> Any:
        """The loaded native model: xgboost/lightgbm Booster or scikit-learn estimator."""
        return self.model.native

    def encode(self, values: Mapping[str, Any]) -> np.ndarray:
        """One model-input row: NaN for missing/None, binary -> 1.0/0.0, categorical -> index.

        A value may be given bare (4.2) or as a payload entry ({"value": 4.2, ...}).
        """
        row = np.full(len(self.codecs), np.nan, dtype=np.float64)
        for i, codec in enumerate(self.codecs):
            value = values.get(codec.name)
            if isinstance(value, Mapping):
                value = value.get("value")
            if value is None or (isinstance(value, float) and np.isnan(value)):
                if not self.model.handles_missing:
                    raise EncodingError(
                        codec.name,
                        f"{codec.name} is required: this model cannot take a missing value "
                        "(and Sightline never imputes one silently).",
                    )
                continue
            row[i] = _encode_value(codec, value)
        # scikit-learn compares float32 inputs: round here so SHAP sees exactly what the model sees.
        return self.model.prepare(row)[0]

    def encode_many(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """`encode` of many rows at once (the cohort job): the same matrix, column by column.

        Columns of the types ingest stores (numbers, 0/1 or booleans, known categories, None) are
        converted with numpy; anything else (a value `encode` would refuse or convert one by one)
        sends the whole batch through `encode`, so the result and any error are exactly its.
        """
        matrix = np.full((len(rows), len(self.codecs)), np.nan, dtype=np.float64)
        for j, codec in enumerate(self.codecs):
            entries = [row.get(codec.name) for row in rows]
            column = [e.get("value") if type(e) is dict else _bare(e) for e in entries]
            encoded = self._encode_column(codec, column)
            if encoded is None:
                return np.vstack([self.encode(row) for row in rows])
            matrix[:, j] = encoded
        return self.model.prepare(matrix)

    def _encode_column(self, codec: _FeatureCodec, column: list) -> np.ndarray | None:
        """One column encoded with numpy, or None when a value needs `encode`'s one-by-one path."""
        kinds = set(map(type, column))
        if codec.kind == "categorical":
            if not kinds <= {str, NoneType}:
                return None
            index = {category: float(i) for i, category in reversed(list(enumerate(codec.categories)))}
            try:
                encoded = np.array([np.nan if v is None else index[v] for v in column], dtype=np.float64)
            except KeyError:
                return None
        elif kinds <= ({bool, int, float, NoneType} if codec.kind == "binary" else {int, float, NoneType}):
            try:
                encoded = np.array(column, dtype=np.float64)  # None -> NaN (not measured), like encode
            except OverflowError:
                return None
        else:
            return None
        missing = np.isnan(encoded)
        if missing.any() and not self.model.handles_missing:
            return None
        if codec.kind == "binary" and not np.isin(encoded[~missing], (0.0, 1.0)).all():
            return None
        if np.isinf(encoded).any():
            return None
        return encoded

    def predict_margin(self, rows: np.ndarray) -> np.ndarray:
        """Log-odds, one per row."""
        return self.model.predict_margin(rows)

    def predict_risk(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(core.sigmoid(self.predict_margin(rows)), dtype=np.float64)

    @property
    def explainer(self):
        """The interventional TreeExplainer over the whole registered background (built once)."""
        explainer = self._explainer
        if explainer is None:
            with _LOCK:
                if self._explainer is None:
                    self._explainer = core.tree_explainer(self.model.shap_model, self.background)
                explainer = self._explainer
        return explainer


def _bare(value: Any) -> Any:
    """A payload entry ({"value": 4.2, ...}) or a bare value, as the bare value."""
    return value.get("value") if isinstance(value, Mapping) else value


def _encode_value(codec: _FeatureCodec, value: Any) -> float:
    if codec.kind == "binary":
        if isinstance(value, bool | int | float | str) and value in _TRUE:
            return 1.0
        if isinstance(value, bool | int | float | str) and value in _FALSE:
            return 0.0
        raise EncodingError(codec.name, f"{codec.name} is binary: expected true or false, got {value!r}.")
    if codec.kind == "categorical":
        if isinstance(value, str) and value in codec.categories:
            return float(codec.categories.index(value))
        raise EncodingError(
            codec.name, f"{codec.name} must be one of {', '.join(codec.categories)}; got {value!r}."
        )
    if isinstance(value, bool):
        raise EncodingError(codec.name, f"{codec.name} must be a number, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EncodingError(codec.name, f"{codec.name} must be a number, got {value!r}.") from None
    if not np.isfinite(number):
        raise EncodingError(codec.name, f"{codec.name} must be a finite number, got {value!r}.")
    return number


_LOCK = threading.RLock()
_CACHE: dict[tuple[int, str], ServingModel] = {}


def _artifact_bytes(version: ModelVersion, name: str) -> bytes:
    expected = version.artifacts[name]
    path = artifact_store_path(expected)
    if not path.is_file():
        raise ArtifactTampered(f"{version}: artifact {name} is missing from the model store ({path}).")
    data = path.read_bytes()
    if sha256_bytes(data) != expected:
        raise ArtifactTampered(
            f"{version}: artifact {name} ({path}) does not match the sha256 recorded at registration; "
            "this version refuses to serve."
        )
    return data


def _load(version: ModelVersion) -> ServingModel:
    # Every artifact is re-hashed, not only the ones loaded here: a changed file of any kind
    # means the registered version is no longer what was verified.
    contents = {name: _artifact_bytes(version, name) for name in version.artifacts}
    spec = version.spec
    try:
        model = load_model(contents[spec["model"]["path"]], version.model_format, spec["model"]["path"])
    except ModelFormatError as exc:
        raise ArtifactTampered(f"{version}: the stored model cannot be loaded: {exc}") from exc
    features = [f for f in version.features.all().order_by("position") if f.decision_time]
    names = [f.name for f in features]
    if list(model.feature_names) != names:
        raise ArtifactTampered(f"{version}: the stored model's inputs differ from the registered features.")
    background = pd.read_parquet(io.BytesIO(contents[spec["background"]["path"]]))
    reference = pd.read_parquet(io.BytesIO(contents[spec["reference"]["path"]]))
    return ServingModel(
        version_id=version.pk,
        feature_names=names,
        model=model,
        background=model.prepare(background[names].to_numpy(dtype=np.float64)),
        reference=reference,
        codecs=[_FeatureCodec(f.name, f.kind, list(f.categories or [])) for f in features],
    )


def serving_model(version: ModelVersion) -> ServingModel:
    """The loaded model of `version`, cached per process; raises ArtifactTampered if a stored
    artifact's hash differs from the one recorded at registration."""
    key = (version.pk, version.bundle_sha256)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            cached = _load(version)
            _CACHE[key] = cached
        return cached


def serving_cache_clear() -> None:
    """Forget every loaded model (tests; a worker after the model store changed)."""
    with _LOCK:
        _CACHE.clear()
