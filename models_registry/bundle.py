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
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine import calibration, metrics
from engine import checks as judged
from engine.tiers import thresholds as tier_thresholds
from models_registry.bundle_checks import (
    check_additivity,
    check_challenger,
    check_expected_risk,
    check_frame,
    check_randomisation,
    check_reference,
    check_shap_engine,
    read_parquet,
)
from models_registry.bundle_rules import (  # noqa: F401 (BundleError is the module's API)
    ADDITIVITY_SAMPLE,
    ADDITIVITY_SEED,
    CHALLENGER_TRUSTED_TYPES,
    EXPECTED_RISK_TOLERANCE,
    FEATURE_KINDS,
    FEATURE_NAME_PATTERN,
    FORMAT_VERSION,
    MAX_UNCOMPRESSED_BYTES,
    NAME_PATTERN,
    RANDOMISATION_ROWS,
    BundleError,
)
from models_registry.bundle_spec import number, parse_features, parse_spec, parse_subgroups
from models_registry.bundle_subgroups import check_subgroup_columns
from models_registry.bundle_zip import BundleTooLarge, extract_zip  # noqa: F401 (the module's API)
from models_registry.formats import MODEL_FORMATS, ModelFormatError, TreeModel, load_model


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
    # bundle.yaml subgroups, normalised (bundle_spec.parse_subgroups); unit and shift come on top.
    subgroups: list[dict] = field(default_factory=list)

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


def read_bundle(path: Path | str, *, max_unpacked_bytes: int = MAX_UNCOMPRESSED_BYTES) -> Bundle:
    """Read and verify a bundle directory or .zip; raise BundleError naming the first problem.

    A .zip may unpack to at most `max_unpacked_bytes` (BundleTooLarge) and hold only bundle.yaml
    and the files it names (bundle_zip)."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"Bundle not found: {path}.")
    if path.is_dir():
        return _read_directory(path)
    if zipfile.is_zipfile(path):
        with tempfile.TemporaryDirectory(prefix="sightline-bundle-") as tmp:
            return _read_directory(extract_zip(path, Path(tmp), max_unpacked_bytes=max_unpacked_bytes))
    raise BundleError(f"{path.name} is neither a bundle directory nor a .zip file.")


def _read_file(root: Path, relative: str, what: str) -> bytes:
    if not isinstance(relative, str) or not relative:
        raise BundleError(f"bundle.yaml {what} path must be a file name.")
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise BundleError(f"bundle.yaml {what} path '{relative}' points outside the bundle.")
    if not candidate.is_file():
        raise BundleError(f"The bundle has no {relative} ({what} file named in bundle.yaml).")
    return candidate.read_bytes()


def _read_named_files(root: Path, spec: dict, files: dict[str, bytes]) -> None:
    """Add the model, background, reference and challenger files bundle.yaml names to `files`."""
    for what in ("model", "background", "reference"):
        files[spec[what]["path"]] = _read_file(root, spec[what]["path"], what)
    challenger = spec.get("challenger")
    if challenger is not None:
        files[challenger["path"]] = _read_file(root, challenger["path"], "challenger")


def _load_bundle_model(spec: dict, files: dict[str, bytes]) -> TreeModel:
    model_path = spec["model"]["path"]
    model_format = spec["model"]["format"]
    if model_format not in MODEL_FORMATS:
        raise BundleError(
            f"Unknown model format '{model_format}': expected one of {', '.join(MODEL_FORMATS)} "
            "(pickled models are never accepted)."
        )
    try:
        return load_model(files[model_path], model_format, model_path)
    except ModelFormatError as exc:
        raise BundleError(str(exc)) from exc


def _model_input_names(model: TreeModel, features: list[dict], model_path: str) -> list[str]:
    """The decision-time feature names, which must be exactly the model's inputs in the model's order."""
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
    return input_names


def _read_frames(
    spec: dict,
    files: dict[str, bytes],
    model: TreeModel,
    features: list[dict],
    input_names: list[str],
    subgroups: list[dict],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The checked background and reference frames."""
    background_path = spec["background"]["path"]
    reference_path = spec["reference"]["path"]
    background = read_parquet(files[background_path], background_path)
    reference = read_parquet(files[reference_path], reference_path)
    check_frame(background, background_path, features=features, input_names=input_names)
    check_frame(reference, reference_path, features=features, input_names=input_names)
    check_reference(reference, reference_path, spec["reference"]["label"])
    check_subgroup_columns(reference, reference_path, subgroups)
    if not model.handles_missing:
        for frame, frame_name in ((background, background_path), (reference, reference_path)):
            missing = [c for c in input_names if frame[c].isna().any()]
            if missing:
                raise BundleError(
                    f"{frame_name} column '{missing[0]}' has missing values, but the model "
                    f"({type(model.native).__name__}) cannot take missing values."
                )
    return background, reference


def _explanation_checks(
    spec: dict, model: TreeModel, background: pd.DataFrame, reference: pd.DataFrame, input_names: list[str]
) -> dict:
    """The checks on the model's risk and its SHAP explanations over the background and reference sets."""
    checks: dict = {"feature_names_match": {"passed": True, "inputs": len(input_names)}}
    reference_inputs = reference[input_names].to_numpy(dtype=np.float64)
    background_inputs = background[input_names].to_numpy(dtype=np.float64)
    checks["reproduces_expected_risk"] = check_expected_risk(model, reference, reference_inputs)
    checks["shap_additivity"], sample, attribution = check_additivity(
        model, background_inputs, reference_inputs
    )
    checks["model_randomisation"] = check_randomisation(model, background_inputs, sample, attribution)
    checks["shap_engine"] = check_shap_engine(model, background_inputs, reference_inputs, sample, attribution)
    checks["background_documentation"] = judged.background_documentation(
        background=background,
        reference=reference,
        description=str(spec["background"].get("description") or ""),
    )
    return checks


def _performance_and_gate(
    spec: dict,
    files: dict[str, bytes],
    reference: pd.DataFrame,
    input_names: list[str],
    checks: dict,
    margin: float,
) -> tuple[dict, dict]:
    """(performance, promotion gate) on the reference set; adds the challenger and AUROC to `checks`."""
    label = spec["reference"]["label"]
    challenger = spec.get("challenger")
    labels = reference[label].to_numpy(dtype=np.float64)
    risk = reference["expected_risk"].to_numpy(dtype=np.float64)
    tiers = tier_thresholds(high=float(spec["tiers"]["high"]), medium=float(spec["tiers"]["medium"]))
    performance = {"model": metrics.performance(labels, risk, thresholds=tiers)}
    challenger_risk = None
    if challenger is not None:
        checks["challenger"], challenger_risk = check_challenger(
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
    return performance, gate


def _read_directory(root: Path) -> Bundle:
    files: dict[str, bytes] = {}
    if not (root / "bundle.yaml").is_file():
        raise BundleError("The bundle has no bundle.yaml.")
    files["bundle.yaml"] = (root / "bundle.yaml").read_bytes()
    spec = parse_spec(files["bundle.yaml"])
    features = parse_features(spec["features"])
    declared_subgroups = parse_subgroups(spec.get("subgroups"), features)
    _read_named_files(root, spec, files)
    model = _load_bundle_model(spec, files)
    input_names = _model_input_names(model, features, spec["model"]["path"])
    background, reference = _read_frames(spec, files, model, features, input_names, declared_subgroups)
    margin = _auroc_margin(spec)
    checks = _explanation_checks(spec, model, background, reference, input_names)
    performance, gate = _performance_and_gate(spec, files, reference, input_names, checks, margin)
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
        subgroups=declared_subgroups,
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
    if not number(margin) or not 0 <= margin <= 0.5:
        raise BundleError("bundle.yaml promotion.auroc_margin must be a number from 0 to 0.5 (AUROC points).")
    return float(margin)
