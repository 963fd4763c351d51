"""Reading tree models into per-node arrays, exactly as each library evaluates its splits."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass

import numpy as np

# missing kinds
_MISSING_DEFAULT = 0  # NaN takes the default side; otherwise x <= t
_MISSING_AS_ZERO = 1  # LightGBM missing_type None: NaN is compared as 0.0
_MISSING_ZERO_DEFAULT = 2  # LightGBM missing_type Zero: |x| <= 1e-35 or NaN take the default side
_LGB_ZERO = 1e-35


class UnsupportedModel(ValueError):
    """The fast engine cannot read this model exactly; use the shap reference instead."""


def as_rows(rows) -> np.ndarray:
    return np.atleast_2d(np.asarray(rows, dtype=np.float64))


# --------------------------------------------------------------------------------------- formats


def detect_format(model) -> str:
    module = type(model).__module__
    if module.startswith("xgboost"):
        return "xgboost"
    if module.startswith("lightgbm"):
        return "lightgbm"
    if module.startswith("sklearn"):
        return "sklearn"
    raise UnsupportedModel(f"unknown model type {type(model).__module__}.{type(model).__name__}")


def _xgb_booster(model):
    return model.get_booster() if hasattr(model, "get_booster") else model


def _lgb_booster(model):
    return model.booster_ if hasattr(model, "booster_") else model


def model_margin(model, rows: np.ndarray, model_format: str | None = None) -> np.ndarray:
    """The model's own raw output (log-odds for binary classifiers), one value per row."""
    rows = as_rows(rows)
    model_format = model_format or detect_format(model)
    if model_format == "xgboost":
        import xgboost

        booster = _xgb_booster(model)
        matrix = xgboost.DMatrix(rows, feature_names=booster.feature_names, missing=np.nan)
        return np.asarray(booster.predict(matrix, output_margin=True), dtype=np.float64).reshape(-1)
    if model_format == "lightgbm":
        return np.asarray(_lgb_booster(model).predict(rows, raw_score=True), dtype=np.float64).reshape(-1)
    if model_format == "sklearn":
        rows32 = rows.astype(np.float32)
        score = model.decision_function if hasattr(model, "decision_function") else model.predict
        with warnings.catch_warnings():
            # Fitted on a DataFrame, scored on an array in the same column order.
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            return np.asarray(score(rows32), dtype=np.float64).reshape(-1)
    raise UnsupportedModel(f"unknown model format {model_format!r}")


# ------------------------------------------------------------------------------------- parsing
#
# Every parser returns a list of trees, each a dict of per-node arrays in the tree's own numbering:
# left, right (-1 at leaves), feature, threshold (go left iff x <= threshold), default_left,
# missing (kind), value (leaf output, already scaled), and the model's intercept, the number of
# features, and whether inputs are rounded to float32 before the comparisons.


@dataclass
class _Parsed:
    trees: list[dict]
    intercept: float
    n_features: int
    float32_inputs: bool
    feature_names: list[str] | None


def _parse_xgboost(model) -> _Parsed:
    booster = _xgb_booster(model)
    config = json.loads(booster.save_raw("json"))
    learner = config["learner"]
    gbm = learner["gradient_booster"]
    if gbm.get("name") != "gbtree":
        raise UnsupportedModel(f"XGBoost booster {gbm.get('name')!r} is not supported (only gbtree)")
    params = learner["learner_model_param"]
    if int(params.get("num_class", "0")) > 1 or int(params.get("num_target", "1")) > 1:
        raise UnsupportedModel("multi-class / multi-target XGBoost models are not supported")
    objective = learner["objective"]["name"]
    base_score = float(str(params["base_score"]).strip("[]").split(",")[0])
    if objective in ("binary:logistic", "reg:logistic", "binary:logitraw"):
        if not 0.0 < base_score < 1.0:
            raise UnsupportedModel(f"XGBoost base_score {base_score} outside (0, 1)")
        intercept = math.log(base_score / (1.0 - base_score))
    elif objective in ("reg:squarederror", "reg:linear", "reg:pseudohubererror", "reg:absoluteerror"):
        intercept = base_score
    else:
        raise UnsupportedModel(f"XGBoost objective {objective!r} is not supported")
    model_json = gbm["model"]
    if any(int(t) != 0 for t in model_json.get("tree_info", [])):
        raise UnsupportedModel("multi-output XGBoost trees are not supported")
    n_features = int(params["num_feature"])
    trees = []
    for tree in model_json["trees"]:
        if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
            raise UnsupportedModel("vector-leaf XGBoost trees are not supported")
        if any(int(s) != 0 for s in tree.get("split_type", [])):
            raise UnsupportedModel("XGBoost categorical splits are not supported")
        left = np.asarray(tree["left_children"], dtype=np.int64)
        right = np.asarray(tree["right_children"], dtype=np.int64)
        cond = np.asarray(tree["split_conditions"], dtype=np.float32)
        # XGBoost: float32(x) < t. For float32 x that is x <= the float32 just below t.
        below = np.nextafter(cond, np.float32(-np.inf)).astype(np.float64)
        is_leaf = left < 0
        trees.append(
            {
                "left": left,
                "right": right,
                "feature": np.asarray(tree["split_indices"], dtype=np.int64),
                "threshold": np.where(is_leaf, 0.0, below),
                "default_left": np.asarray(tree["default_left"], dtype=np.uint8),
                "missing": np.zeros(left.size, dtype=np.uint8),
                "value": np.where(is_leaf, cond.astype(np.float64), 0.0),
            }
        )
    return _Parsed(trees, intercept, n_features, True, booster.feature_names)


_LGB_MISSING = {"NaN": _MISSING_DEFAULT, "None": _MISSING_AS_ZERO, "Zero": _MISSING_ZERO_DEFAULT}


def _lgb_tree(structure: dict) -> dict:
    """One dump_model() tree as node arrays (pre-order numbering)."""
    nodes: list[dict] = []
    left: list[int] = []
    right: list[int] = []
    stack: list[tuple[dict, int, int]] = [(structure, -1, 0)]  # (node, parent index, 0 left / 1 right)
    while stack:
        node, parent, side = stack.pop()
        index = len(nodes)
        nodes.append(node)
        left.append(-1)
        right.append(-1)
        if parent >= 0:
            (left if side == 0 else right)[parent] = index
        if "split_feature" in node:
            if node.get("decision_type", "<=") != "<=":
                raise UnsupportedModel("LightGBM categorical splits are not supported")
            if node.get("missing_type", "None") not in _LGB_MISSING:
                raise UnsupportedModel(f"LightGBM missing_type {node.get('missing_type')!r} is not supported")
            stack.append((node["right_child"], index, 1))
            stack.append((node["left_child"], index, 0))
    split = ["split_feature" in node for node in nodes]
    return {
        "left": np.asarray(left, dtype=np.int64),
        "right": np.asarray(right, dtype=np.int64),
        "feature": np.asarray([n["split_feature"] if s else 0 for n, s in zip(nodes, split, strict=True)]),
        "threshold": np.asarray(
            [float(n["threshold"]) if s else 0.0 for n, s in zip(nodes, split, strict=True)]
        ),
        "default_left": np.asarray([bool(n.get("default_left", True)) for n in nodes], dtype=np.uint8),
        "missing": np.asarray(
            [
                _LGB_MISSING[n.get("missing_type", "None")] if s else 0
                for n, s in zip(nodes, split, strict=True)
            ],
            dtype=np.uint8,
        ),
        "value": np.asarray(
            [0.0 if s else float(n.get("leaf_value", 0.0)) for n, s in zip(nodes, split, strict=True)]
        ),
    }


def _parse_lightgbm(model) -> _Parsed:
    booster = _lgb_booster(model)
    dump = booster.dump_model()
    if int(dump.get("num_tree_per_iteration", 1)) != 1 or int(dump.get("num_class", 1)) != 1:
        raise UnsupportedModel("multi-class LightGBM models are not supported")
    if dump.get("average_output"):
        raise UnsupportedModel("LightGBM random-forest (average_output) models are not supported")
    trees = []
    for info in dump["tree_info"]:
        if info.get("is_linear"):
            raise UnsupportedModel("LightGBM linear trees are not supported")
        trees.append(_lgb_tree(info["tree_structure"]))
    names = list(dump.get("feature_names") or [])
    if names == [f"Column_{i}" for i in range(len(names))]:  # LightGBM's default names: no names
        names = []
    return _Parsed(trees, 0.0, int(dump["max_feature_idx"]) + 1, False, names)


def _parse_sklearn(model) -> _Parsed:
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    if not isinstance(model, GradientBoostingClassifier | GradientBoostingRegressor):
        raise UnsupportedModel(f"scikit-learn model {type(model).__name__} is not supported")
    estimators = getattr(model, "estimators_", None)
    if estimators is None:
        raise UnsupportedModel("the scikit-learn model is not fitted")
    if estimators.shape[1] != 1:
        raise UnsupportedModel("multi-class GradientBoostingClassifier is not supported")
    init = model.init_
    if isinstance(init, str) and init == "zero":
        intercept = 0.0
    elif isinstance(init, DummyClassifier | DummyRegressor):
        probe = np.zeros((1, model.n_features_in_), dtype=np.float32)
        intercept = float(np.ravel(model._raw_predict_init(probe))[0])
    else:
        raise UnsupportedModel("GradientBoosting with a non-constant init estimator is not supported")
    rate = float(model.learning_rate)
    trees = []
    for estimator in estimators[:, 0]:
        tree = estimator.tree_
        left = np.asarray(tree.children_left, dtype=np.int64)
        is_leaf = left < 0
        missing_left = getattr(tree, "missing_go_to_left", None)
        if missing_left is None:
            missing_left = np.ones(left.size, dtype=np.uint8)
        trees.append(
            {
                "left": left,
                "right": np.asarray(tree.children_right, dtype=np.int64),
                "feature": np.where(is_leaf, 0, tree.feature).astype(np.int64),
                "threshold": np.where(is_leaf, 0.0, tree.threshold).astype(np.float64),
                "default_left": np.asarray(missing_left, dtype=np.uint8),
                "missing": np.zeros(left.size, dtype=np.uint8),
                "value": np.where(is_leaf, rate * tree.value[:, 0, 0], 0.0).astype(np.float64),
            }
        )
    names = getattr(model, "feature_names_in_", None)
    return _Parsed(trees, intercept, int(model.n_features_in_), True, None if names is None else list(names))


PARSERS = {"xgboost": _parse_xgboost, "lightgbm": _parse_lightgbm, "sklearn": _parse_sklearn}
