"""The checks that reject a bundle: its data frames against its schema, expected risk reproduced,
SHAP additivity, model randomisation, and the interpretable challenger (loaded with skops and an
explicit list of trusted types, never unpickled)."""

from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd

from engine import checks as judged
from engine import treeshap as core
from models_registry.bundle_rules import (
    ADDITIVITY_SAMPLE,
    ADDITIVITY_SEED,
    CHALLENGER_TRUSTED_TYPES,
    EXPECTED_RISK_TOLERANCE,
    RANDOMISATION_ROWS,
    BundleError,
)
from models_registry.formats import TreeModel


def read_parquet(data: bytes, name: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise BundleError(f"{name} is not a readable parquet file: {type(exc).__name__}.") from exc


def check_frame(frame: pd.DataFrame, name: str, *, features: list[dict], input_names: list[str]) -> None:
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


def check_reference(reference: pd.DataFrame, name: str, label: str) -> None:
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


def check_expected_risk(model: TreeModel, reference: pd.DataFrame, rows: np.ndarray) -> dict:
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


def check_additivity(
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


def check_shap_engine(
    model: TreeModel,
    background: np.ndarray,
    reference_rows: np.ndarray,
    sample: np.ndarray,
    attribution: core.Attribution,
) -> dict:
    """Which engine explains this version: the fast engine when it equals shap on the additivity
    sample (values and base, to core.ENGINE_PROOF_TOLERANCE) and, over the whole reference set,
    adds up to the model's log-odds on every row; else shap, with the reason."""
    figures = core.engine_prove(
        model.model_format, model.shap_model, model.prepare(background), sample, attribution
    )
    if figures["engine"] != core.ENGINE_FAST:
        return figures
    engine = core.fast_engine(model.model_format, model.shap_model, model.prepare(background))
    rows = model.prepare(reference_rows)
    started = time.perf_counter()
    whole = engine.explain(rows)
    seconds = time.perf_counter() - started
    errors = core.additivity_error(whole, model.predict_margin(rows))
    worst = float(errors.max()) if errors.size else 0.0
    figures.update(
        reference_rows=int(len(rows)),
        reference_max_additivity_error=worst,
        reference_ms_per_row=round(1000 * seconds / max(len(rows), 1), 4),
    )
    if not worst <= core.ADDITIVITY_TOLERANCE:
        figures.update(
            engine=core.ENGINE_REFERENCE,
            reason=f"the fast engine's additivity error reaches {worst:.1e} log-odds on the reference set",
        )
    return figures


def check_randomisation(
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


def check_challenger(
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
    return {"passed": True, "reference_auroc": auroc(labels.to_numpy(), risk)}, risk


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
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
