"""Model artifact formats: one adapter per format, the same surface for each. Plain Python, no Django.

Every format is read without unpickling: XGBoost from its native JSON/UBJSON, LightGBM from its
text model, scikit-learn from a skops file whose types are all on an explicit allow-list.
`TreeModel.predict_margin` is always the log-odds that TreeSHAP explains, and
`TreeModel.shap_model` is what `engine.treeshap.tree_explainer` is given.
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

MODEL_FORMATS = ("xgboost", "lightgbm", "sklearn-skops")

# The scikit-learn estimators whose log-odds TreeSHAP reproduces exactly (additivity to ~1e-8 on
# float32-rounded inputs). HistGradientBoostingClassifier is not here: shap's TreeExplainer does
# not reproduce its decision_function (errors of ~0.1 log-odds), so its explanations would be wrong.
SKLEARN_SUPPORTED_ESTIMATORS = ("sklearn.ensemble._gb.GradientBoostingClassifier",)
# Types a scikit-learn model file may hold beyond the ones skops trusts by default.
# skops.io.get_untrusted_types must return a subset of these, else the file is rejected unread.
# (skops itself trusts the scikit-learn estimator classes; their fitted trees are not on its list.)
SKLEARN_MODEL_TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)


class ModelFormatError(ValueError):
    """An artifact that cannot be served; the message names the file and the problem."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class TreeModel:
    """A loaded tree model: native object, input names in model order, and how to score it."""

    model_format: str
    native: Any  # xgboost.Booster | lightgbm.Booster | sklearn GradientBoostingClassifier
    feature_names: list[str]
    handles_missing: bool

    def prepare(self, rows: np.ndarray) -> np.ndarray:
        """Rows exactly as the model compares them. scikit-learn trees compare float32 inputs, so
        values are rounded to float32 first; TreeSHAP then routes every row the way the model does."""
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        if self.model_format == "sklearn-skops":
            rows = rows.astype(np.float32).astype(np.float64)
        return rows

    def predict_margin(self, rows: np.ndarray) -> np.ndarray:
        """Log-odds, one per row."""
        rows = self.prepare(rows)
        if self.model_format == "xgboost":
            # In place, on one thread (loaded so): the same margins as predict(DMatrix(...)) for
            # dense rows, without building a DMatrix, which costs 50-100x the prediction itself
            # for a request's few rows; processes (web workers, the Celery pool) give parallelism.
            margins = self.native.inplace_predict(rows, predict_type="margin", missing=np.nan)
        elif self.model_format == "lightgbm":
            margins = self.native.predict(rows, raw_score=True)
        else:
            with warnings.catch_warnings():
                # Fitted on a DataFrame, scored on an array in the same column order.
                warnings.filterwarnings("ignore", message="X does not have valid feature names")
                margins = self.native.decision_function(rows)
        return np.asarray(margins, dtype=np.float64).ravel()

    @property
    def shap_model(self) -> Any:
        return self.native

    def randomised_copy(self, seed: int) -> TreeModel:
        """The same trees with every leaf value replaced by a seeded random draw of the same spread:
        the model-randomisation sanity check explains this copy and compares."""
        rng = np.random.default_rng(seed)
        if self.model_format == "xgboost":
            native = _randomised_xgboost(self.native, rng)
        elif self.model_format == "lightgbm":
            native = _randomised_lightgbm(self.native, rng)
        else:
            native = _randomised_sklearn(self.native, rng)
        return TreeModel(self.model_format, native, list(self.feature_names), self.handles_missing)


def load_model(data: bytes, model_format: str, name: str) -> TreeModel:
    """Read a model artifact of a declared format; raise ModelFormatError naming the problem."""
    if data[:1] == b"\x80" or data[:2] == b"\x80\x04":
        raise ModelFormatError(f"{name} is a pickle; pickled models are never accepted.")
    if model_format == "xgboost":
        return load_xgboost(data, name)
    if model_format == "lightgbm":
        return load_lightgbm(data, name)
    if model_format == "sklearn-skops":
        return load_sklearn(data, name)
    raise ModelFormatError(
        f"Unknown model format '{model_format}': expected one of {', '.join(MODEL_FORMATS)} "
        "(pickled models are never accepted)."
    )


def load_xgboost(data: bytes, name: str = "model.json") -> TreeModel:
    import xgboost as xgb

    if data[:1] not in (b"{", b"["):
        # XGBoost's JSON and UBJSON both start with '{'; a pickle starts with 0x80.
        raise ModelFormatError(f"{name} is not an XGBoost JSON model (pickled models are never accepted).")
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            booster = xgb.Booster(model_file=tmp.name)
        except xgb.core.XGBoostError as exc:
            raise ModelFormatError(f"{name} is not a readable XGBoost model: {_first_line(exc)}.") from exc
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective != "binary:logistic":
        raise ModelFormatError(
            f"{name} has objective {objective}; Sightline serves binary:logistic models (risk = "
            "sigmoid of the log-odds that SHAP explains)."
        )
    booster.set_param({"nthread": 1})
    return TreeModel("xgboost", booster, list(booster.feature_names or []), handles_missing=True)


def load_lightgbm(data: bytes, name: str = "model.txt") -> TreeModel:
    import lightgbm as lgb

    if not data.startswith(b"tree\n"):
        raise ModelFormatError(
            f"{name} is not a LightGBM text model (it must start with 'tree'; save it with "
            "Booster.save_model; pickled models are never accepted)."
        )
    with tempfile.NamedTemporaryFile(suffix=".txt") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            booster = lgb.Booster(model_file=tmp.name)
        except lgb.basic.LightGBMError as exc:
            raise ModelFormatError(f"{name} is not a readable LightGBM model: {_first_line(exc)}.") from exc
    objective = str(booster.dump_model(num_iteration=0).get("objective", ""))
    if not objective.startswith("binary"):
        raise ModelFormatError(
            f"{name} has objective '{objective}'; Sightline serves binary models (risk = sigmoid of "
            "the log-odds that SHAP explains)."
        )
    names = list(booster.feature_name())
    if all(re.fullmatch(r"Column_\d+", n) for n in names):
        names = []  # LightGBM's placeholder names: the model was trained without feature names.
    return TreeModel("lightgbm", booster, names, handles_missing=True)


def load_sklearn(data: bytes, name: str = "model.skops") -> TreeModel:
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises several types for a file that is not one of its zips
        raise ModelFormatError(f"{name} is not a readable skops file: {_first_line(exc)}.") from exc
    unexpected = sorted(set(untrusted) - set(SKLEARN_MODEL_TRUSTED_TYPES))
    if unexpected:
        raise ModelFormatError(f"{name} contains types that are not trusted: {', '.join(unexpected)}.")
    try:
        estimator = skops.io.loads(data, trusted=list(untrusted))
    except Exception as exc:
        raise ModelFormatError(f"{name} cannot be loaded: {_first_line(exc)}.") from exc
    qualified = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    if qualified not in SKLEARN_SUPPORTED_ESTIMATORS:
        raise ModelFormatError(
            f"{name} holds a {type(estimator).__name__} model; Sightline explains models with SHAP's "
            "TreeExplainer in log-odds, which for scikit-learn means a binary "
            "GradientBoostingClassifier (use XGBoost or LightGBM for other tree models)."
        )
    classes = list(getattr(estimator, "classes_", []))
    if len(classes) != 2 or getattr(estimator, "loss", "log_loss") != "log_loss":
        raise ModelFormatError(f"{name} must be a binary classifier with log_loss (two classes).")
    names = [str(n) for n in getattr(estimator, "feature_names_in_", [])]
    return TreeModel("sklearn-skops", estimator, names, handles_missing=False)


def _leaf_spread(values: np.ndarray) -> float:
    spread = float(np.std(values)) if values.size else 0.0
    return spread if spread > 0 else 0.1


def _randomised_xgboost(booster, rng: np.random.Generator):
    import xgboost as xgb

    model = json.loads(booster.save_raw(raw_format="json"))
    trees = model["learner"]["gradient_booster"]["model"]["trees"]
    leaves = [(tree, [i for i, left in enumerate(tree["left_children"]) if left == -1]) for tree in trees]
    real = np.array([tree["split_conditions"][i] for tree, index in leaves for i in index], dtype=np.float64)
    spread = _leaf_spread(real)
    for tree, index in leaves:
        draws = rng.normal(0.0, spread, size=len(index))
        for i, value in zip(index, draws, strict=True):
            tree["split_conditions"][i] = float(value)
            tree["base_weights"][i] = float(value)
    randomised = xgb.Booster(model_file=bytearray(json.dumps(model).encode()))
    randomised.set_param({"nthread": 1})
    return randomised


def _randomised_lightgbm(booster, rng: np.random.Generator):
    import lightgbm as lgb

    text = booster.model_to_string()
    real = np.array(
        [float(v) for line in re.findall(r"^leaf_value=(.*)$", text, re.M) for v in line.split()],
        dtype=np.float64,
    )
    spread = _leaf_spread(real)

    def replace(match: re.Match) -> str:
        count = len(match.group(1).split())
        return "leaf_value=" + " ".join(repr(float(v)) for v in rng.normal(0.0, spread, size=count))

    text = re.sub(r"^leaf_value=(.*)$", replace, text, flags=re.M)
    # The header's byte sizes of each tree no longer hold; without them LightGBM reads tree by tree.
    text = re.sub(r"^tree_sizes=.*\n", "", text, count=1, flags=re.M)
    return lgb.Booster(model_str=text)


def _randomised_sklearn(estimator, rng: np.random.Generator):
    randomised = copy.deepcopy(estimator)
    trees = [tree.tree_ for tree in np.ravel(randomised.estimators_)]
    real = np.concatenate([t.value[t.children_left == -1].ravel() for t in trees])
    spread = _leaf_spread(real)
    for tree in trees:
        leaves = tree.children_left == -1
        # tree.value is a writable view of the tree's own buffer.
        tree.value[leaves] = rng.normal(0.0, spread, size=tree.value[leaves].shape)
    return randomised
