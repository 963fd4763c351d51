"""FastEngine against shap's interventional TreeExplainer (the reference), no Django.

.venv/bin/pytest engine/tests/test_fastshap.py                       # with the repo's Django config
.venv/bin/pytest engine/tests/test_fastshap.py -p no:django --noconftest  # without Django at all
"""

import json

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

from engine.fastshap import (
    EngineResult,
    FastEngine,
    ReferenceEngine,
    UnsupportedModel,
    WoodelfEngine,
    additivity_errors,
    explain_checked,
    model_margin,
    verify,
)

N_ROWS, N_FEATURES, N_BACKGROUND = 360, 8, 200


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(16)
    X = rng.normal(size=(N_ROWS, N_FEATURES))
    X[:, 3] = (X[:, 3] > 0).astype(float)  # a binary 0/1 feature
    X[:, 5] = np.round(X[:, 5] * 4) / 4  # ties on thresholds
    y = (X[:, 0] + X[:, 1] * X[:, 2] + 1.5 * X[:, 3] - X[:, 5] ** 2 + rng.normal(size=N_ROWS) > 0).astype(int)
    full = X.copy()
    X[rng.random(X.shape) < 0.2] = np.nan  # not measured
    return {"X": X, "full": full, "y": y}


def _xgb(data, depth, rounds):
    params = {"max_depth": depth, "objective": "binary:logistic", "eta": 0.3, "seed": 0}
    return xgb.train(params, xgb.DMatrix(data["X"], label=data["y"]), rounds)


@pytest.fixture(scope="module")
def models(data):
    X, y = data["X"], data["y"]
    full32 = data["full"].astype(np.float32).astype(np.float64)
    lgb_params = {"objective": "binary", "num_leaves": 15, "min_data_in_leaf": 5, "verbose": -1, "seed": 0}
    gbc = GradientBoostingClassifier(n_estimators=25, max_depth=3, random_state=0).fit(full32, y)
    # GradientBoostingClassifier rejects NaN, so it is trained and explained on complete rows.
    return {
        "xgboost-depth4": ("xgboost", _xgb(data, 4, 30), X),
        "xgboost-depth6": ("xgboost", _xgb(data, 6, 20), X),
        "lightgbm": ("lightgbm", lgb.train(lgb_params, lgb.Dataset(X, label=y), 25), X),
        "sklearn-gbc": ("sklearn", gbc, full32),
    }


@pytest.fixture(scope="module")
def engines(models):
    out = {}
    for name, (fmt, model, X) in models.items():
        background, rows = X[:N_BACKGROUND], X[N_BACKGROUND:]
        out[name] = (FastEngine(model, fmt, background), ReferenceEngine(model, background), model, fmt, rows)
    return out


MODEL_NAMES = ["xgboost-depth4", "xgboost-depth6", "lightgbm", "sklearn-gbc"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fast_engine_equals_shap_interventional(engines, name):
    fast, reference, _model, _fmt, rows = engines[name]
    report = verify(fast, reference, rows, tolerance=1e-6)
    assert report["passed"], report
    assert report["base_diff"] <= 1e-6
    assert fast.background_size == reference.background_size == N_BACKGROUND
    if name != "sklearn-gbc":
        assert np.isnan(rows).any()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fast_engine_is_additive_with_the_model_margin(engines, name):
    fast, _reference, model, fmt, rows = engines[name]
    result = fast.explain(rows)
    assert isinstance(result, EngineResult)
    assert result.values.shape == (rows.shape[0], N_FEATURES)
    assert additivity_errors(result, model_margin(model, rows, fmt)).max() < 1e-5


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_base_is_the_mean_margin_over_the_whole_background(models, engines, name):
    fast = engines[name][0]
    fmt, model, X = models[name]
    assert fast.base_value == pytest.approx(model_margin(model, X[:N_BACKGROUND], fmt).mean(), abs=1e-5)


def test_single_row_matches_the_batch(engines):
    fast, *_rest, rows = engines["xgboost-depth6"]
    batch = fast.explain(rows[:100]).values
    for i in (0, 7, 99):
        np.testing.assert_allclose(fast.explain(rows[i]).values[0], batch[i], rtol=0, atol=1e-12)


def test_deep_leaves_pattern_mode_equals_table_mode(models, engines):
    fmt, model, X = models["lightgbm"]
    fast, _reference, _m, _f, rows = engines["lightgbm"]
    patterns = FastEngine(model, fmt, X[:N_BACKGROUND], max_table_features=2)
    assert patterns.n_deep_leaves > 0
    np.testing.assert_allclose(patterns.explain(rows).values, fast.explain(rows).values, rtol=0, atol=1e-12)
    assert patterns.base_value == pytest.approx(fast.base_value, abs=1e-12)


def _ulp_rows(model, rows):
    """Rows whose first split feature is the float32 just below the root threshold of tree 0."""
    tree = json.loads(model.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"][0]
    feature, threshold = tree["split_indices"][0], np.float32(tree["split_conditions"][0])
    edge = rows[:4].copy()
    edge[:, feature] = np.nextafter(threshold, np.float32(-np.inf))
    return edge


def test_float32_ulp_below_an_xgboost_threshold(data, engines):
    fast, reference, model, fmt, rows = engines["xgboost-depth4"]
    edge = _ulp_rows(model, rows)
    mixed = np.vstack([rows[10:30], edge])
    margins = model_margin(model, mixed, fmt)

    # The fast engine compares in float32 as XGBoost does: exact, nothing falls back.
    checked = explain_checked(fast, reference, mixed, margins)
    assert checked.n_fallback == 0
    assert checked.max_additivity_error < 1e-5
    assert verify(fast, reference, edge)["passed"]

    # woodelf-explainer compares in float64 and routes those rows the wrong way; the per-row
    # additivity check catches them and only they are recomputed with shap.
    woodelf = WoodelfEngine(model, data["X"][:N_BACKGROUND])
    raw = woodelf.explain(mixed)
    assert additivity_errors(raw, margins)[-4:].min() > 1e-3
    checked = explain_checked(woodelf, reference, mixed, margins)
    assert checked.fallback_rows.tolist() == [20, 21, 22, 23]
    assert checked.max_additivity_error < 1e-5
    np.testing.assert_allclose(checked.result.values[20:], reference.explain(edge).values, atol=1e-12)


def test_explain_checked_falls_back_only_on_failing_rows(engines):
    fast, reference, model, fmt, rows = engines["lightgbm"]
    rows = rows[:12]

    class Broken:
        background_size = fast.background_size

        def explain(self, r):
            result = fast.explain(r)
            values = result.values.copy()
            values[::3, 0] += 0.5
            return EngineResult(result.base_value, values, result.background_size)

    checked = explain_checked(Broken(), reference, rows, model_margin(model, rows, fmt))
    assert checked.fallback_rows.tolist() == [0, 3, 6, 9]
    assert checked.max_additivity_error < 1e-5


def test_lightgbm_missing_type_none_routes_nan_as_zero(data):
    # Trained without missing values (missing_type None): LightGBM predicts NaN as 0.0.
    X, y = data["X"], data["y"]
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "min_data_in_leaf": 5,
        "verbose": -1,
        "use_missing": False,
    }
    model = lgb.train(params, lgb.Dataset(data["full"], label=y), 20)
    fast = FastEngine(model, "lightgbm", X[:N_BACKGROUND])
    rows = X[N_BACKGROUND:]
    assert additivity_errors(fast.explain(rows), model_margin(model, rows)).max() < 1e-9


def test_unsupported_models(data):
    X, y = data["X"], data["y"]
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(N_FEATURES)])
    frame["f3"] = pd.Categorical(np.where(np.isnan(X[:, 3]), "u", np.where(X[:, 3] > 0, "a", "b")))
    categorical = xgb.train(
        {"max_depth": 3, "objective": "binary:logistic"},
        xgb.DMatrix(frame, label=y, enable_categorical=True),
        5,
    )
    with pytest.raises(UnsupportedModel, match="categorical"):
        FastEngine(categorical, "xgboost", X[:50])

    lgb_cat = lgb.train(
        {"objective": "binary", "verbose": -1, "min_data_in_leaf": 5},
        lgb.Dataset(frame, label=y, categorical_feature=["f3"]),
        5,
    )
    with pytest.raises(UnsupportedModel, match="categorical"):
        FastEngine(lgb_cat, "lightgbm", X[:50])

    multiclass = xgb.train(
        {"max_depth": 3, "objective": "multi:softprob", "num_class": 3},
        xgb.DMatrix(X, label=np.arange(N_ROWS) % 3),
        3,
    )
    with pytest.raises(UnsupportedModel):
        FastEngine(multiclass, "xgboost", X[:50])

    forest = RandomForestClassifier(n_estimators=3).fit(data["full"], y)
    with pytest.raises(UnsupportedModel):
        FastEngine(forest, "sklearn", data["full"][:50])
    with pytest.raises(UnsupportedModel):
        FastEngine(object(), None, X[:50])
    with pytest.raises(UnsupportedModel):
        FastEngine(forest, "catboost", X[:50])


def test_feature_names_must_match(models):
    fmt, model, X = models["lightgbm"]
    with pytest.raises(ValueError, match="feature names"):
        FastEngine(model, fmt, X[:50], feature_names=["a", "b"])


def test_engine_prove_falls_back_to_shap_for_a_model_the_fast_engine_cannot_read(data):
    from engine import treeshap as core

    X, y = data["full"], data["y"]
    forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, y)
    background, sample = X[:N_BACKGROUND], X[N_BACKGROUND : N_BACKGROUND + 20]
    reference = core.tree_explainer(forest, background).explain(sample)

    proof = core.engine_prove("sklearn-skops", forest, background, sample, reference)

    assert proof["engine"] == core.ENGINE_REFERENCE
    assert "RandomForestClassifier is not supported" in proof["reason"]
    engine = core.version_engine(proof["engine"], "sklearn-skops", forest, background, margin=None)
    assert isinstance(engine, ReferenceEngine)


def test_engine_prove_picks_the_fast_engine_when_it_equals_shap(models, engines):
    from engine import treeshap as core

    _fast, reference, model, _fmt, rows = engines["xgboost-depth6"]
    background = models["xgboost-depth6"][2][:N_BACKGROUND]
    proof = core.engine_prove("xgboost", model, background, rows[:50], reference.explain(rows[:50]))

    assert proof["engine"] == core.ENGINE_FAST and proof["reason"] == ""
    assert proof["max_abs_value_diff"] <= 1e-6 and proof["base_diff"] <= 1e-6


def test_guarded_engine_redoes_a_row_that_does_not_add_up_with_shap(engines):
    from engine import treeshap as core

    fast, reference, model, fmt, rows = engines["lightgbm"]
    rows = rows[:12]
    true_margin = model_margin(model, rows, fmt)
    poisoned = true_margin.copy()
    poisoned[3] += 0.5  # as if the fast engine had routed row 3 the wrong way

    guarded = core.GuardedEngine(fast, lambda: reference, margin=lambda r: poisoned[: len(r)])
    result = guarded.explain(rows)

    assert guarded.fallback_rows == 1
    np.testing.assert_array_equal(result.values[3], reference.explain(rows[3:4]).values[0])
    np.testing.assert_array_equal(result.values[:3], fast.explain(rows[:3]).values)
