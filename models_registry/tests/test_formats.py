"""LightGBM text and scikit-learn (skops) models: registration, serving and SHAP, with the same
interface as XGBoost; pickles, untrusted types and estimators TreeSHAP cannot explain are rejected."""

import pickle

import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml

from demo import rhc as demo_rhc
from engine import treeshap as core
from models_registry.bundle import BundleError, read_bundle
from models_registry.models import ModelVersion, RegisteredModel
from models_registry.serving import EncodingError, serving_model
from tests.fixtures.registry import SKLEARN_LEFT_OUT


def _payload(reference: pd.DataFrame, index: int, names: list[str]) -> dict:
    cancer = demo_rhc.feature_specs()
    categories = next(f["categories"] for f in cancer if f["name"] == "cancer")
    row = reference.iloc[index]
    values = {}
    for name in names:
        value = row[name]
        if pd.isna(value):
            values[name] = None
        elif name == "cancer":
            values[name] = categories[int(value)]
        else:
            values[name] = float(value)
    return values


@pytest.mark.parametrize(
    ("bundle_fixture", "model_format", "model_file"),
    [
        ("lightgbm_bundle_dir", "lightgbm", "model.txt"),
        ("sklearn_bundle_dir", "sklearn-skops", "model.skops"),
    ],
)
def test_other_formats_register_and_serve_like_xgboost(
    request, db, model_store, bundle_fixture, model_format, model_file
):
    from models_registry.services import model_register

    path = request.getfixturevalue(bundle_fixture)
    version, created = model_register(path=path)

    assert created and version.model_format == model_format
    assert model_file in version.artifacts
    assert version.checks["reproduces_expected_risk"]["max_abs_diff"] <= 1e-5
    assert version.checks["shap_additivity"]["max_error"] <= 1e-4

    serving = serving_model(version)
    reference = pd.read_parquet(path / "reference.parquet")
    names = [f.name for f in version.input_features()]
    assert serving.feature_names == names
    rows = np.vstack([serving.encode(_payload(reference, i, names)) for i in range(40)])
    risk = serving.predict_risk(rows)
    # The served risk is the training environment's risk, and the margin is its log-odds.
    np.testing.assert_allclose(risk, reference["expected_risk"].to_numpy()[:40], atol=1e-6)
    np.testing.assert_allclose(core.sigmoid(serving.predict_margin(rows)), risk)
    attribution = core.explain(serving.explainer, rows)
    assert attribution.background_size == 200
    assert core.additivity_error(attribution, serving.predict_margin(rows)).max() < 1e-4
    # Registration proved the fast engine on this format; what it serves equals shap, base included.
    assert version.checks["shap_engine"]["engine"] == core.ENGINE_FAST
    assert isinstance(serving.explainer, core.GuardedEngine)
    shap_attribution = core.explain(core.tree_explainer(serving.model.shap_model, serving.background), rows)
    np.testing.assert_allclose(attribution.values, shap_attribution.values, atol=1e-6, rtol=0)
    assert abs(attribution.base_value - shap_attribution.base_value) <= 1e-6


def test_sklearn_model_without_missing_value_support_refuses_a_missing_input(
    db, model_store, sklearn_bundle_dir
):
    from models_registry.services import model_register

    version, _ = model_register(path=sklearn_bundle_dir)
    serving = serving_model(version)
    values = _payload(pd.read_parquet(sklearn_bundle_dir / "reference.parquet"), 0, serving.feature_names)
    values["creatinine"] = None

    with pytest.raises(EncodingError, match="creatinine is required: this model cannot take a missing value"):
        serving.encode(values)
    assert "weight" not in serving.feature_names and set(SKLEARN_LEFT_OUT).isdisjoint(serving.feature_names)


def _copy(bundle_dir, tmp_path, name="copy"):
    import shutil

    target = tmp_path / name
    shutil.copytree(bundle_dir, target)
    return target


def _rejected(path, message):
    from models_registry.services import model_register

    with pytest.raises(BundleError) as error:
        model_register(path=path)
    assert message in str(error.value)
    assert RegisteredModel.objects.count() == 0
    assert ModelVersion.objects.count() == 0


def test_pickled_lightgbm_model_is_rejected(db, model_store, lightgbm_bundle_dir, tmp_path):
    path = _copy(lightgbm_bundle_dir, tmp_path)
    (path / "model.txt").write_bytes(pickle.dumps({"tree": 1}))

    _rejected(path, "model.txt is a pickle; pickled models are never accepted.")


def test_xgboost_json_declared_as_lightgbm_is_rejected(db, model_store, bad_bundle):
    path = bad_bundle()
    spec = yaml.safe_load((path / "bundle.yaml").read_text())
    spec["model"]["format"] = "lightgbm"
    (path / "bundle.yaml").write_text(yaml.safe_dump(spec))

    _rejected(path, "model.json is not a LightGBM text model")


def test_skops_model_with_an_untrusted_type_is_rejected_naming_it(
    db, model_store, sklearn_bundle_dir, tmp_path
):
    import functools
    import operator

    path = _copy(sklearn_bundle_dir, tmp_path)
    (path / "model.skops").write_bytes(skops.io.dumps(functools.partial(operator.add, 1)))

    _rejected(path, "model.skops contains types that are not trusted: _operator.add, functools.partial.")


def test_sklearn_estimator_treeshap_cannot_explain_is_rejected(db, model_store, sklearn_bundle_dir, tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    path = _copy(sklearn_bundle_dir, tmp_path)
    reference = pd.read_parquet(path / "reference.parquet")
    inputs = [n for n in demo_rhc.INPUT_NAMES if n not in SKLEARN_LEFT_OUT]
    # A forest's raw output is a probability, not the log-odds Sightline explains.
    forest = RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0)
    forest.fit(reference[inputs], reference[demo_rhc.LABEL])
    (path / "model.skops").write_bytes(skops.io.dumps(forest))

    _rejected(
        path,
        "model.skops holds a RandomForestClassifier model; Sightline explains models with SHAP's "
        "TreeExplainer in log-odds",
    )


def test_skops_model_on_data_with_missing_values_is_rejected(db, model_store, sklearn_bundle_dir, tmp_path):
    path = _copy(sklearn_bundle_dir, tmp_path)
    reference = pd.read_parquet(path / "reference.parquet")
    reference.loc[5, "sodium"] = np.nan
    reference.to_parquet(path / "reference.parquet", index=False)

    _rejected(
        path,
        "reference.parquet column 'sodium' has missing values, but the model (GradientBoostingClassifier) "
        "cannot take missing values.",
    )


def test_lightgbm_regression_objective_is_rejected(db, model_store, lightgbm_bundle_dir, tmp_path):
    path = _copy(lightgbm_bundle_dir, tmp_path)
    (path / "model.txt").write_text(
        (path / "model.txt").read_text().replace("objective=binary sigmoid:1", "objective=regression")
    )

    _rejected(path, "model.txt has objective 'regression'; Sightline serves binary models")


@pytest.mark.parametrize("bundle_fixture", ["demo_bundle_dir", "lightgbm_bundle_dir", "sklearn_bundle_dir"])
def test_randomised_copy_changes_every_leaf_but_not_the_trees(request, bundle_fixture):
    bundle = read_bundle(request.getfixturevalue(bundle_fixture))
    rows = bundle.reference[bundle.input_names].to_numpy(dtype=np.float64)[:50]
    rows = rows[~np.isnan(rows).any(axis=1)]
    randomised = bundle.model.randomised_copy(0)
    again = bundle.model.randomised_copy(0)

    real_margin = bundle.model.predict_margin(rows)
    random_margin = randomised.predict_margin(rows)
    assert not np.allclose(real_margin, random_margin)
    # Seeded: the same copy every time, and the original model is untouched.
    np.testing.assert_array_equal(random_margin, again.predict_margin(rows))
    np.testing.assert_array_equal(
        real_margin, read_bundle(request.getfixturevalue(bundle_fixture)).model.predict_margin(rows)
    )
