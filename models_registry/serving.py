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
from typing import Any

import numpy as np
import pandas as pd

from engine import treeshap as core
from engine.encoding import Codec, EncodingError, bare, encode_column_fast, encode_value, is_missing
from models_registry.bundle import sha256_bytes
from models_registry.formats import ModelFormatError, TreeModel, load_model
from models_registry.models import ModelVersion
from models_registry.services import artifact_store_path


class ArtifactTampered(RuntimeError):
    """A stored artifact no longer has the sha256 recorded at registration: the version refuses to serve."""


@dataclass
class ServingModel:
    version_id: int
    feature_names: list[str]
    model: TreeModel
    background: np.ndarray
    reference: pd.DataFrame
    codecs: list[Codec] = field(repr=False)
    # The engine registration proved for this version (checks.shap_engine); shap when it has none.
    engine_name: str = core.ENGINE_REFERENCE
    _explainer: Any = field(default=None, init=False, repr=False)

    @property
    def booster(self) -> Any:
        """The loaded native model: xgboost/lightgbm Booster or scikit-learn estimator."""
        return self.model.native

    def encode(self, values: Mapping[str, Any]) -> np.ndarray:
        """One model-input row: NaN for missing/None, binary -> 1.0/0.0, categorical -> index.

        A value may be given bare (4.2) or as a payload entry ({"value": 4.2, ...}).
        """
        return self._encode_bare([bare(values.get(codec.name)) for codec in self.codecs])

    def _encode_bare(self, values: Sequence[Any]) -> np.ndarray:
        """`encode` of one row's bare values, in feature order."""
        row = np.full(len(self.codecs), np.nan, dtype=np.float64)
        for i, (codec, value) in enumerate(zip(self.codecs, values, strict=True)):
            if is_missing(value):
                if not self.model.handles_missing:
                    raise EncodingError(
                        codec.name,
                        f"{codec.name} is required: this model cannot take a missing value "
                        "(and Sightline never imputes one silently).",
                    )
                continue
            row[i] = encode_value(codec, value)
        # scikit-learn compares float32 inputs: round here so SHAP sees exactly what the model sees.
        return self.model.prepare(row)[0]

    def encode_many(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """`encode` of many rows at once: the same matrix, column by column (see encode_columns)."""
        columns = []
        for codec in self.codecs:
            entries = [row.get(codec.name) for row in rows]
            columns.append([e.get("value") if type(e) is dict else bare(e) for e in entries])
        return self.encode_columns(columns)

    def encode_columns(self, columns: Sequence[Sequence[Any]]) -> np.ndarray:
        """`encode` of rows given as one sequence of bare values per feature, in feature order (the
        cohort job reads them so from the database).

        Columns of the types ingest stores (numbers, 0/1 or booleans, known categories, None) are
        converted with numpy; anything else (a value `encode` would refuse or convert one by one)
        sends the whole batch through `encode`'s row path, so the result and any error are exactly its.
        """
        if len(columns) != len(self.codecs):
            raise ValueError(f"{len(columns)} columns for {len(self.codecs)} features")
        matrix = np.full((len(columns[0]) if columns else 0, len(self.codecs)), np.nan, dtype=np.float64)
        for j, (codec, column) in enumerate(zip(self.codecs, columns, strict=True)):
            encoded = encode_column_fast(codec, column)
            if encoded is not None and np.isnan(encoded).any() and not self.model.handles_missing:
                encoded = None  # encode names the feature that may not be missing
            if encoded is None:
                return np.vstack([self._encode_bare(row) for row in zip(*columns, strict=True)])
            matrix[:, j] = encoded
        return self.model.prepare(matrix)

    def predict_margin(self, rows: np.ndarray) -> np.ndarray:
        """Log-odds, one per row."""
        return self.model.predict_margin(rows)

    def predict_risk(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(core.sigmoid(self.predict_margin(rows)), dtype=np.float64)

    @property
    def explainer(self):
        """The version's SHAP engine over the whole registered background (built once)."""
        explainer = self._explainer
        if explainer is None:
            with _LOCK:
                if self._explainer is None:
                    self._explainer = self.engine_over(self.background)
                explainer = self._explainer
        return explainer

    def engine_over(self, background: np.ndarray):
        """The version's engine over `background` (the whole background, or a stability subsample)."""
        return core.version_engine(
            self.engine_name, self.model.model_format, self.model.shap_model, background, self.predict_margin
        )


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
        codecs=[Codec(f.name, f.kind, list(f.categories or [])) for f in features],
        engine_name=(version.checks.get("shap_engine") or {}).get("engine", core.ENGINE_REFERENCE),
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
