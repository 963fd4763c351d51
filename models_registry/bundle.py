"""Read and verify a model bundle (CONTRACT.md section 1). Plain Python, no Django.

`read_bundle` either returns a fully checked `Bundle` or raises `BundleError` with one sentence
naming the first problem. Nothing here is ever unpickled: models are read by `formats` (XGBoost
JSON, LightGBM text, scikit-learn via skops with an allow-list of types), and the skops challenger
is loaded only with an explicit list of trusted types.

Besides the checks that reject, registration computes figures a reviewer judges: performance and
calibration with bootstrap intervals (`metrics`), the background documentation and
model-randomisation checks and the promotion gate (`checks`). All are stored with the version.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import yaml

from engine import calibration, metrics
from engine import checks as judged
from engine import treeshap as core
from models_registry.formats import MODEL_FORMATS, ModelFormatError, TreeModel, load_model

FORMAT_VERSION = 1
FEATURE_KINDS = ("numeric", "binary", "categorical")
EXPECTED_RISK_TOLERANCE = 1e-5
ADDITIVITY_SAMPLE = 200
ADDITIVITY_SEED = 0
RANDOMISATION_ROWS = 100
MAX_UNCOMPRESSED_BYTES = 1024**3
CHALLENGER_TRUSTED_TYPES = (
    "sklearn.pipeline.Pipeline",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.impute._base.MissingIndicator",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
    "numpy.dtype",
    "numpy.ndarray",
    "builtins.slice",
)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
FEATURE_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


class BundleError(ValueError):
    """A bundle that cannot be registered; the message names the first problem."""


@dataclass
class Bundle:
    spec: dict
    features: list[dict]  # normalised feature specs, in bundle.yaml order
    input_names: list[str]  # decision_time features = model inputs, in model order
    model: TreeModel
    background: pd.DataFrame
    reference: pd.DataFrame
    files: dict[str, bytes]  # bundle-relative path -> content, every artifact incl. bundle.yaml
    artifacts: dict[str, str]  # bundle-relative path -> sha256
    bundle_sha256: str
    checks: dict = field(default_factory=dict)
    # metrics.performance of the model (and of the challenger) on the reference set.
    metrics: dict = field(default_factory=dict)
    gate: dict = field(default_factory=dict)

    @property
    def booster(self):
        """The loaded native model (xgboost/lightgbm Booster or scikit-learn estimator)."""
        return self.model.native

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def label(self) -> str:
        return self.spec["reference"]["label"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundle_digest(artifacts: dict[str, str]) -> str:
    """One hash over every artifact's name and hash: equal for byte-identical bundles."""
    text = "".join(f"{name}\t{digest}\n" for name, digest in sorted(artifacts.items()))
    return sha256_bytes(text.encode())


def read_bundle(path: Path | str) -> Bundle:
    """Read and verify a bundle directory or .zip; raise BundleError naming the first problem."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"Bundle not found: {path}.")
    if path.is_dir():
        return _read_directory(path)
    if zipfile.is_zipfile(path):
        with tempfile.TemporaryDirectory(prefix="sightline-bundle-") as tmp:
            return _read_directory(_extract_zip(path, Path(tmp)))
    raise BundleError(f"{path.name} is neither a bundle directory nor a .zip file.")


def _extract_zip(path: Path, target: Path) -> Path:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise BundleError(f"{path.name} is not a readable zip file: {exc}.") from exc
    with archive:
        members = archive.infolist()
        total = 0
        for member in members:
            name = member.filename
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise BundleError(f"Zip member '{name}' has a path outside the bundle folder.")
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise BundleError(f"Zip member '{name}' is a symbolic link; bundles hold plain files only.")
            total += member.file_size
        if total > MAX_UNCOMPRESSED_BYTES:
            raise BundleError(
                f"{path.name} unpacks to {total:,} bytes, more than the 1 GiB a bundle may hold."
            )
        archive.extractall(target)
    if (target / "bundle.yaml").is_file():
        return target
    # A zip of the bundle folder itself: bundle/bundle.yaml.
    candidates = [p.parent for p in target.glob("*/bundle.yaml")]
    if len(candidates) == 1:
        return candidates[0]
    raise BundleError(f"{path.name} has no bundle.yaml at its top level or in a single top-level folder.")


def _read_file(root: Path, relative: str, what: str) -> bytes:
    if not isinstance(relative, str) or not relative:
        raise BundleError(f"bundle.yaml {what} path must be a file name.")
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise BundleError(f"bundle.yaml {what} path '{relative}' points outside the bundle.")
    if not candidate.is_file():
        raise BundleError(f"The bundle has no {relative} ({what} file named in bundle.yaml).")
    return candidate.read_bytes()


def _read_directory(root: Path) -> Bundle:
    files: dict[str, bytes] = {}
    if not (root / "bundle.yaml").is_file():
        raise BundleError("The bundle has no bundle.yaml.")
    files["bundle.yaml"] = (root / "bundle.yaml").read_bytes()
    spec = _parse_spec(files["bundle.yaml"])
    features = _parse_features(spec["features"])

    model_path = spec["model"]["path"]
    files[model_path] = _read_file(root, model_path, "model")
    background_path = spec["background"]["path"]
    files[background_path] = _read_file(root, background_path, "background")
    reference_path = spec["reference"]["path"]
    files[reference_path] = _read_file(root, reference_path, "reference")
    challenger = spec.get("challenger")
    if challenger is not None:
        files[challenger["path"]] = _read_file(root, challenger["path"], "challenger")

    model_format = spec["model"]["format"]
    if model_format not in MODEL_FORMATS:
        raise BundleError(
            f"Unknown model format '{model_format}': expected one of {', '.join(MODEL_FORMATS)} "
            "(pickled models are never accepted)."
        )
    try:
        model = load_model(files[model_path], model_format, model_path)
    except ModelFormatError as exc:
        raise BundleError(str(exc)) from exc

    by_name = {f["name"]: f for f in features}
    input_names = [f["name"] for f in features if f["decision_time"]]
    model_names = list(model.feature_names)
    if not model_names:
        raise BundleError(
            f"{model_path} has no feature names; save the model from one trained on named columns."
        )
    for name in model_names:
        if name not in by_name:
            raise BundleError(f"Model input '{name}' is not in the bundle.yaml features.")
        if not by_name[name]["decision_time"]:
            raise BundleError(
                f"Model input '{name}' is declared decision_time: false (known only after the decision "
                "point); a model must not use it."
            )
    for name in input_names:
        if name not in model_names:
            raise BundleError(f"Feature '{name}' is decision_time: true but is not an input of the model.")
    if model_names != input_names:
        raise BundleError(
            "The decision_time features in bundle.yaml are not in the order the model expects: "
            f"model order is {', '.join(model_names)}."
        )

    label = spec["reference"]["label"]
    background = _read_parquet(files[background_path], background_path)
    reference = _read_parquet(files[reference_path], reference_path)
    _check_frame(background, background_path, features=features, input_names=input_names)
    _check_frame(reference, reference_path, features=features, input_names=input_names)
    _check_reference(reference, reference_path, label)
    if not model.handles_missing:
        for frame, frame_name in ((background, background_path), (reference, reference_path)):
            missing = [c for c in input_names if frame[c].isna().any()]
            if missing:
                raise BundleError(
                    f"{frame_name} column '{missing[0]}' has missing values, but the model "
                    f"({type(model.native).__name__}) cannot take missing values."
                )
    margin = _auroc_margin(spec)

    checks: dict = {"feature_names_match": {"passed": True, "inputs": len(input_names)}}
    reference_inputs = reference[input_names].to_numpy(dtype=np.float64)
    background_inputs = background[input_names].to_numpy(dtype=np.float64)
    checks["reproduces_expected_risk"] = _check_expected_risk(model, reference, reference_inputs)
    checks["shap_additivity"], sample, attribution = _check_additivity(
        model, background_inputs, reference_inputs
    )
    checks["model_randomisation"] = _check_randomisation(model, background_inputs, sample, attribution)
    checks["background_documentation"] = judged.background_documentation(
        background=background,
        reference=reference,
        description=str(spec["background"].get("description") or ""),
    )
    labels = reference[label].to_numpy(dtype=np.float64)
    risk = reference["expected_risk"].to_numpy(dtype=np.float64)
    tiers = {"high": float(spec["tiers"]["high"]), "medium": float(spec["tiers"]["medium"])}
    performance = {"model": metrics.performance(labels, risk, thresholds=tiers)}
    challenger_risk = None
    if challenger is not None:
        checks["challenger"], challenger_risk = _check_challenger(
            challenger, files[challenger["path"]], reference[input_names], reference[label]
        )
        performance["challenger"] = metrics.performance(labels, challenger_risk, thresholds=tiers)
    checks["reference_auroc"] = performance["model"]["auroc"]["value"]
    if spec.get("calibration") is not None:
        performance["recalibrated"] = _recalibration(spec["calibration"]["method"], labels, risk, tiers)
    gate = judged.promotion_gate(
        model=performance["model"],
        challenger=performance.get("challenger"),
        margin=margin,
        auroc_difference=(
            metrics.paired_difference(labels, risk, challenger_risk, "auroc")
            if challenger_risk is not None
            else None
        ),
    )
    gate["margin_reason"] = str((spec.get("promotion") or {}).get("reason") or "")

    artifacts = {name: sha256_bytes(data) for name, data in files.items()}
    return Bundle(
        spec=spec,
        features=features,
        input_names=input_names,
        model=model,
        background=background,
        reference=reference,
        files=files,
        artifacts=artifacts,
        bundle_sha256=bundle_digest(artifacts),
        checks=checks,
        metrics=performance,
        gate=gate,
    )


def _recalibration(method: str, labels: np.ndarray, risk: np.ndarray, tiers: dict[str, float]) -> dict:
    """Performance of the recalibrated risk (cross-fitted on the reference set) with the mapping
    fitted on the whole reference set. Shown beside the model's own figures; never served: the risk
    posted and explained is the registered model's output (CONTRACT.md section 2)."""
    events = int(labels.sum())
    if min(events, len(labels) - events) < 2 * calibration.CROSS_FIT_FOLDS:
        raise BundleError(
            f"bundle.yaml calibration needs at least {2 * calibration.CROSS_FIT_FOLDS} patients with and "
            f"without the outcome in the reference set for {calibration.CROSS_FIT_FOLDS}-fold cross-fitting."
        )
    crossed = calibration.cross_fitted_risk(method, labels, risk)
    return {
        **metrics.performance(labels, crossed, thresholds=tiers),
        "calibration": {
            "method": method,
            "mapping": calibration.recalibration_fit(method, labels, risk),
            "cross_fitting": {
                "folds": calibration.CROSS_FIT_FOLDS,
                "seed": calibration.CROSS_FIT_SEED,
                "stratified": True,
            },
            "served": False,
        },
    }


def _auroc_margin(spec: dict) -> float:
    promotion = spec.get("promotion")
    if promotion is None:
        return judged.DEFAULT_AUROC_MARGIN
    if not isinstance(promotion, dict):
        raise BundleError("bundle.yaml promotion must be a mapping, e.g. {auroc_margin: 0.03}.")
    margin = promotion.get("auroc_margin", judged.DEFAULT_AUROC_MARGIN)
    if not _number(margin) or not 0 <= margin <= 0.5:
        raise BundleError("bundle.yaml promotion.auroc_margin must be a number from 0 to 0.5 (AUROC points).")
    return float(margin)


def _require(mapping: dict, key: str, where: str) -> object:
    if not isinstance(mapping, dict) or key not in mapping or mapping[key] in (None, ""):
        raise BundleError(f"bundle.yaml is missing {where}{key}.")
    return mapping[key]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _parse_spec(raw: bytes) -> dict:
    try:
        spec = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"bundle.yaml is not valid YAML: {first_line}.") from exc
    if not isinstance(spec, dict):
        raise BundleError("bundle.yaml must be a YAML mapping (name, model, features, ...).")
    version = _require(spec, "format_version", "")
    if version != FORMAT_VERSION:
        raise BundleError(f"bundle.yaml format_version is {version!r}; this registry reads format_version 1.")
    name = _require(spec, "name", "")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise BundleError(f"bundle.yaml name {name!r} must be lower-case letters, digits, '-' or '_'.")
    _require(spec, "outcome", "")
    horizon = _require(spec, "horizon_hours", "")
    if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon <= 0:
        raise BundleError("bundle.yaml horizon_hours must be a positive whole number of hours.")
    model = _require(spec, "model", "")
    _require(model, "path", "model.")
    _require(model, "format", "model.")
    tiers = _require(spec, "tiers", "")
    high, medium = _require(tiers, "high", "tiers."), _require(tiers, "medium", "tiers.")
    if not (_number(high) and _number(medium) and 0 < medium < high < 1):
        raise BundleError("bundle.yaml tiers must satisfy 0 < medium < high < 1.")
    _require(_require(spec, "background", ""), "path", "background.")
    reference = _require(spec, "reference", "")
    _require(reference, "path", "reference.")
    _require(reference, "label", "reference.")
    challenger = spec.get("challenger")
    if challenger is not None:
        _require(challenger, "path", "challenger.")
        if _require(challenger, "format", "challenger.") != "sklearn-skops":
            raise BundleError("bundle.yaml challenger.format must be sklearn-skops.")
    recalibration = spec.get("calibration")
    if recalibration is not None and (
        not isinstance(recalibration, dict) or recalibration.get("method") not in calibration.METHODS
    ):
        raise BundleError("bundle.yaml calibration must be {method: isotonic} or {method: platt}.")
    features = _require(spec, "features", "")
    if not isinstance(features, list):
        raise BundleError("bundle.yaml features must be a list.")
    return spec


def _parse_features(raw: list) -> list[dict]:
    features: list[dict] = []
    seen: set[str] = set()
    for position, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BundleError(f"bundle.yaml feature #{position + 1} has no name.")
        name = item["name"]
        where = f"feature '{name}'"
        if not FEATURE_NAME_PATTERN.match(name):
            raise BundleError(f"bundle.yaml {where}: names are letters, digits and '_' (a column name).")
        if name in seen:
            raise BundleError(f"bundle.yaml {where} is declared twice.")
        seen.add(name)
        kind = item.get("kind")
        if kind not in FEATURE_KINDS:
            raise BundleError(
                f"bundle.yaml {where} has kind {kind!r}; expected numeric, binary or categorical."
            )
        categories = item.get("categories") or []
        if kind == "categorical" and (
            not isinstance(categories, list)
            or len(categories) < 2
            or len(set(map(str, categories))) != len(categories)
        ):
            raise BundleError(f"bundle.yaml {where} is categorical and needs a list of distinct categories.")
        value_range = item.get("range")
        if value_range is None and kind == "numeric":
            raise BundleError(f"bundle.yaml {where} is numeric and needs a plausible range [min, max].")
        if value_range is not None and not (
            isinstance(value_range, list)
            and len(value_range) == 2
            and all(_number(v) for v in value_range)
            and value_range[0] < value_range[1]
        ):
            raise BundleError(f"bundle.yaml {where} range must be [min, max] with min < max.")
        for flag in ("decision_time", "mutable"):
            if flag in item and not isinstance(item[flag], bool):
                raise BundleError(f"bundle.yaml {where} {flag} must be true or false.")
        features.append(
            {
                "name": name,
                "label": str(item.get("label") or name),
                "unit": str(item.get("unit") or ""),
                "source": str(item.get("source") or ""),
                "code": str(item.get("code") or ""),
                "kind": kind,
                "categories": [str(c) for c in categories] if kind == "categorical" else [],
                "range": [float(value_range[0]), float(value_range[1])] if value_range is not None else None,
                "decision_time": item.get("decision_time", True),
                "mutable": item.get("mutable", True),
            }
        )
    if not features:
        raise BundleError("bundle.yaml features is empty.")
    return features


def _read_parquet(data: bytes, name: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise BundleError(f"{name} is not a readable parquet file: {type(exc).__name__}.") from exc


def _check_frame(frame: pd.DataFrame, name: str, *, features: list[dict], input_names: list[str]) -> None:
    if frame.empty:
        raise BundleError(f"{name} has no rows.")
    by_name = {f["name"]: f for f in features}
    for column in [*input_names, "unit", "shift"]:
        if column not in frame.columns:
            raise BundleError(f"{name} has no column '{column}'.")
    for column in ("unit", "shift"):
        if frame[column].isna().any():
            raise BundleError(f"{name} column '{column}' has empty values.")
    for column in input_names:
        spec = by_name[column]
        values = frame[column]
        if not (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)) and not (
            pd.api.types.is_bool_dtype(values) and spec["kind"] == "binary"
        ):
            raise BundleError(
                f"{name} column '{column}' must hold numbers (binary as 0/1, categorical as the index in "
                "its categories)."
            )
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        present = array[~np.isnan(array)]
        if np.isinf(present).any():
            raise BundleError(f"{name} column '{column}' has an infinite value; missing values must be NaN.")
        if spec["kind"] == "binary" and not np.isin(present, [0.0, 1.0]).all():
            raise BundleError(f"{name} column '{column}' is binary but holds values other than 0 and 1.")
        if spec["kind"] == "categorical" and not (
            np.isin(present, np.arange(len(spec["categories"]), dtype=np.float64)).all()
        ):
            raise BundleError(
                f"{name} column '{column}' must hold the index of a category "
                f"(0 to {len(spec['categories']) - 1})."
            )
        if spec["range"] is not None and spec["kind"] == "numeric" and present.size:
            low, high = spec["range"]
            if present.min() < low or present.max() > high:
                raise BundleError(
                    f"{name} column '{column}' has values from {present.min():g} to {present.max():g}, "
                    f"outside its plausible range [{low:g}, {high:g}]."
                )


def _check_reference(reference: pd.DataFrame, name: str, label: str) -> None:
    if label not in reference.columns:
        raise BundleError(f"{name} has no label column '{label}' (bundle.yaml reference.label).")
    labels = reference[label]
    if not (pd.api.types.is_numeric_dtype(labels) or pd.api.types.is_bool_dtype(labels)):
        raise BundleError(f"{name} label column '{label}' must be binary (0/1).")
    array = labels.to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isin(array, [0.0, 1.0]).all():
        raise BundleError(f"{name} label column '{label}' must be binary (0/1) with no missing values.")
    if "expected_risk" not in reference.columns:
        raise BundleError(f"{name} has no expected_risk column (the training environment's predicted risk).")
    risk = pd.to_numeric(reference["expected_risk"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(risk).all() or (risk < 0).any() or (risk > 1).any():
        raise BundleError(f"{name} expected_risk must be a finite probability between 0 and 1 on every row.")


def _check_expected_risk(model: TreeModel, reference: pd.DataFrame, rows: np.ndarray) -> dict:
    try:
        risk = np.asarray(core.sigmoid(model.predict_margin(rows)), dtype=np.float64)
    except Exception as exc:  # each library raises its own types for inputs it cannot score
        raise BundleError(f"The model cannot score the reference set: {type(exc).__name__}: {exc}") from exc
    diff = float(np.max(np.abs(risk - reference["expected_risk"].to_numpy(dtype=np.float64))))
    if not diff <= EXPECTED_RISK_TOLERANCE:
        raise BundleError(
            f"The serving stack does not reproduce expected_risk: largest difference {diff:.2e} "
            f"(tolerance {EXPECTED_RISK_TOLERANCE:.0e}); the model file and the training "
            "environment disagree."
        )
    return {"passed": True, "max_abs_diff": diff, "rows": len(rows), "tolerance": EXPECTED_RISK_TOLERANCE}


def _check_additivity(
    model: TreeModel, background: np.ndarray, reference_rows: np.ndarray
) -> tuple[dict, np.ndarray, core.Attribution]:
    rng = np.random.default_rng(ADDITIVITY_SEED)
    size = min(ADDITIVITY_SAMPLE, len(reference_rows))
    sample = model.prepare(reference_rows[np.sort(rng.choice(len(reference_rows), size=size, replace=False))])
    try:
        explainer = core.tree_explainer(model.shap_model, model.prepare(background))
    except Exception as exc:  # shap raises several types for a model it cannot read
        raise BundleError(f"SHAP's TreeExplainer cannot read the model: {type(exc).__name__}: {exc}") from exc
    started = time.perf_counter()
    attribution = core.explain(explainer, sample)
    seconds = time.perf_counter() - started
    margins = model.predict_margin(sample)
    try:
        worst = core.check_additivity(attribution, margins)
    except core.AdditivityError as exc:
        raise BundleError(f"SHAP additivity fails on the reference set: {exc}") from exc
    figures = {
        "passed": True,
        "max_error": worst,
        "sample_size": size,
        "background_size": attribution.background_size,
        "tolerance": core.ADDITIVITY_TOLERANCE,
        "ms_per_row": round(1000 * seconds / max(size, 1), 3),
    }
    return figures, sample, attribution


def _check_randomisation(
    model: TreeModel, background: np.ndarray, sample: np.ndarray, attribution: core.Attribution
) -> dict:
    seed = judged.RANDOMISATION_SEED
    randomised = model.randomised_copy(seed)
    explainer = core.tree_explainer(randomised.shap_model, model.prepare(background))
    # A ranking of mean |SHAP| over the features is stable on 100 rows; it halves the cost.
    rows = min(RANDOMISATION_ROWS, len(sample))
    return judged.model_randomisation(
        real_shap=attribution.values[:rows],
        randomised_shap=core.explain(explainer, sample[:rows]).values,
        feature_names=model.feature_names,
        seed=seed,
    )


def _check_challenger(
    spec: dict, data: bytes, inputs: pd.DataFrame, labels: pd.Series
) -> tuple[dict, np.ndarray]:
    try:
        challenger = load_challenger(data, spec["path"])
        risk = np.asarray(challenger.predict_proba(inputs)[:, 1], dtype=np.float64)
    except BundleError:
        raise
    except Exception as exc:  # skops and scikit-learn raise many types for a file they cannot use
        raise BundleError(
            f"{spec['path']} cannot score the reference set: {type(exc).__name__}: {exc}."
        ) from exc
    if not np.isfinite(risk).all():
        raise BundleError(f"{spec['path']} gives a non-finite risk on the reference set.")
    return {"passed": True, "reference_auroc": _auroc(labels.to_numpy(), risk)}, risk


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=np.float64)
    if len(np.unique(labels)) < 2:
        return None
    return round(float(roc_auc_score(labels, scores)), 4)


def load_challenger(data: bytes, name: str = "challenger.skops"):
    """The skops challenger, loaded with an explicit list of trusted types only."""
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=data)
    unexpected = sorted(set(untrusted) - set(CHALLENGER_TRUSTED_TYPES))
    if unexpected:
        raise BundleError(f"{name} contains types that are not trusted: {', '.join(unexpected)}.")
    return skops.io.loads(data, trusted=list(untrusted))
