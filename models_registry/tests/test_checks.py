"""Judged registration checks: background documentation and model randomisation, stored with figures."""

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from engine import checks
from engine import treeshap as core
from models_registry.bundle import read_bundle
from models_registry.services import model_register


def test_demo_background_matches_the_reference_mix(model_version, demo_bundle_dir):
    background = pd.read_parquet(demo_bundle_dir / "background.parquet")
    reference = pd.read_parquet(demo_bundle_dir / "reference.parquet")
    check = model_version.checks["background_documentation"]

    assert (check["passed"], check["flagged"], check["reasons"]) == (True, False, [])
    assert (check["size"], check["reference_size"]) == (200, 1147)
    micu = check["unit"]["shares"]["MICU"]
    assert micu["background"] == round((background["unit"] == "MICU").mean(), 4)
    assert micu["reference"] == round((reference["unit"] == "MICU").mean(), 4)
    assert set(check["shift"]["shares"]) == {"day", "night"}
    assert check["unit"]["max_share_difference"] <= 0.10
    assert "stratified by (simulated) unit and shift" in check["description"]


def test_background_from_one_unit_is_flagged_with_its_figures(db, model_store, bad_bundle):
    path = bad_bundle()
    background = pd.read_parquet(path / "background.parquet")
    background["unit"] = "MICU"
    background.to_parquet(path / "background.parquet", index=False)
    reference_share = (pd.read_parquet(path / "reference.parquet")["unit"] == "MICU").mean()

    version, _ = model_register(path=path)

    check = version.checks["background_documentation"]
    assert check["flagged"] is True and check["passed"] is False
    assert check["unit"]["max_difference_level"] == "MICU"
    assert check["unit"]["max_share_difference"] == round(1 - reference_share, 4)
    assert check["reasons"] == [
        f"unit 'MICU' is 100% of the background but {reference_share:.0%} of the reference set"
    ]
    assert check["unit"]["p_value"] < 1e-6


def test_background_without_description_is_flagged():
    frame = pd.DataFrame({"unit": ["A", "B"] * 10, "shift": ["day", "night"] * 10})

    check = checks.background_documentation(background=frame, reference=frame, description=" ")

    assert check["flagged"] is True
    assert check["reasons"] == [
        "bundle.yaml background.description is empty (size, units, shifts and period)"
    ]


def test_randomisation_check_recomputes_from_a_randomised_copy(model_version, demo_bundle_dir):
    bundle = read_bundle(demo_bundle_dir)
    stored = model_version.checks["model_randomisation"]
    rng = np.random.default_rng(0)
    rows = bundle.reference[bundle.input_names].to_numpy(dtype=np.float64)
    sample = rows[np.sort(rng.choice(len(rows), size=200, replace=False))][:100]
    background = bundle.background[bundle.input_names].to_numpy(dtype=np.float64)
    real = core.explain(core.tree_explainer(bundle.model.native, background), sample).values
    randomised_model = bundle.model.randomised_copy(0)
    randomised = core.explain(core.tree_explainer(randomised_model.native, background), sample).values

    rho = spearmanr(np.abs(real).mean(axis=0), np.abs(randomised).mean(axis=0)).statistic
    assert stored["spearman"] == round(rho, 4)
    assert stored["spearman"] < 0.8 and stored["flagged"] is False
    assert (stored["seed"], stored["rows"]) == (0, 100)
    assert stored["top_features_real"][0] == bundle.input_names[int(np.argmax(np.abs(real).mean(axis=0)))]


def test_explanations_that_ignore_the_model_are_flagged():
    shap_values = np.random.default_rng(1).normal(size=(50, 6)) * np.arange(1, 7)

    check = checks.model_randomisation(
        real_shap=shap_values, randomised_shap=shap_values * 1.5, feature_names=list("abcdef"), seed=0
    )

    assert (check["spearman"], check["flagged"]) == (1.0, True)
    assert check["top_features_real"] == ["f", "e", "d", "c", "b"]
