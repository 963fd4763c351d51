"""Optional recalibration (isotonic / Platt) stored with the version, checked against sklearn."""

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

from engine.calibration import (
    cross_fit_folds,
    cross_fitted_risk,
    recalibration_apply,
    recalibration_fit,
)
from models_registry.bundle import BundleError, read_bundle
from models_registry.services import model_register
from models_registry.serving import serving_model


@pytest.fixture(scope="module")
def reference(demo_bundle_dir):
    frame = pd.read_parquet(demo_bundle_dir / "reference.parquet")
    return frame["died_30d"].to_numpy(dtype=np.float64), frame["expected_risk"].to_numpy(dtype=np.float64)


def _logit(p):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def _with_calibration(bad_bundle, method):
    directory = bad_bundle()
    spec = yaml.safe_load((directory / "bundle.yaml").read_text())
    spec["calibration"] = {"method": method}
    (directory / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return directory


def test_isotonic_mapping_is_sklearns_isotonic_regression(reference):
    labels, risk = reference
    mapping = recalibration_fit("isotonic", labels, risk)
    sklearn = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(risk, labels)

    grid = np.r_[risk, np.linspace(-0.1, 1.1, 301)]
    np.testing.assert_allclose(recalibration_apply(mapping, grid), sklearn.predict(grid), atol=1e-12)
    # Plain JSON numbers: nothing pickled.
    assert set(mapping) == {"method", "x", "y"} and all(isinstance(v, float) for v in mapping["y"])


def test_platt_mapping_is_sklearns_logistic_regression_on_the_logit(reference):
    labels, risk = reference
    mapping = recalibration_fit("platt", labels, risk)
    sklearn = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(_logit(risk)[:, None], labels)

    assert mapping["slope"] == pytest.approx(sklearn.coef_[0, 0], abs=1e-6)
    assert mapping["intercept"] == pytest.approx(sklearn.intercept_[0], abs=1e-6)
    np.testing.assert_allclose(
        recalibration_apply(mapping, risk), sklearn.predict_proba(_logit(risk)[:, None])[:, 1], atol=1e-7
    )


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_cross_fitted_risk_never_uses_the_patients_own_label(reference, method):
    labels, risk = reference
    crossed = cross_fitted_risk(method, labels, risk)
    folds = cross_fit_folds(labels)
    assert sorted(np.bincount(folds)) == [229, 229, 229, 230, 230]
    # Stratified: each fold's event count within one of a fifth of the events.
    events = np.bincount(folds, weights=labels)
    assert events.max() - events.min() <= 1
    # Each fold scored by a mapping fitted on the other four (sklearn, independently).
    for fold in range(5):
        rest = folds != fold
        if method == "isotonic":
            sk = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(risk[rest], labels[rest])
            expected = sk.predict(risk[~rest])
        else:
            sk = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000)
            sk.fit(_logit(risk[rest])[:, None], labels[rest])
            expected = sk.predict_proba(_logit(risk[~rest])[:, None])[:, 1]
        np.testing.assert_allclose(crossed[~rest], expected, atol=1e-6)
    # Flipping one patient's label leaves that patient's own cross-fitted risk unchanged.
    flipped = labels.copy()
    flipped[0] = 1 - flipped[0]
    assert cross_fitted_risk(method, flipped, risk, assignment=folds)[0] == pytest.approx(
        crossed[0], abs=1e-9
    )


def test_isotonic_in_sample_figures_would_be_optimistic(reference):
    labels, risk = reference
    in_sample = recalibration_apply(recalibration_fit("isotonic", labels, risk), risk)
    crossed = cross_fitted_risk("isotonic", labels, risk)
    assert brier_score_loss(labels, in_sample) < brier_score_loss(labels, crossed)


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_registration_stores_the_mapping_and_cross_fitted_figures_but_serves_the_raw_risk(
    db, model_store, bad_bundle, reference, method, settings, alice_client
):
    labels, risk = reference
    version, _ = model_register(path=_with_calibration(bad_bundle, method))

    recal = version.metrics["recalibrated"]
    crossed = cross_fitted_risk(method, labels, risk)
    assert recal["brier"]["value"] == round(brier_score_loss(labels, crossed), 4)
    assert recal["n"] == len(labels)
    assert recal["calibration"]["mapping"] == recalibration_fit(method, labels, risk)
    assert recal["calibration"]["cross_fitting"] == {"folds": 5, "seed": 0, "stratified": True}
    assert recal["calibration"]["served"] is False
    # The model's own figures and the gate are those of the raw risk.
    assert version.metrics["model"]["brier"]["value"] == round(brier_score_loss(labels, risk), 4)
    # Serving: the registered model's output, not the recalibrated risk.
    frame = pd.read_parquet(bad_bundle().joinpath("reference.parquet")).head(20)
    model = serving_model(version)
    rows = frame[[f.name for f in version.input_features()]].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(model.predict_risk(rows), frame["expected_risk"], atol=1e-5)

    card = alice_client.get(f"/api/v1/models/{version.registered_model.name}/versions/1/card/").json()
    assert card["performance"]["recalibrated"]["ece"] == recal["ece"]
    page = alice_client.get(f"/models/{version.registered_model.name}/versions/1/").content.decode()
    assert f"Recalibration ({method}), shown for comparison only" in page
    # The card prints Brier to three decimals (models_registry.card_figures), the API keeps it whole.
    before, after = version.metrics["model"]["brier"]["value"], recal["brier"]["value"]
    assert f"Brier {before:.3f} → {after:.3f}" in page


def test_unknown_calibration_method_is_rejected(bad_bundle):
    with pytest.raises(BundleError, match=r"calibration must be \{method: isotonic\} or \{method: platt\}"):
        read_bundle(_with_calibration(bad_bundle, "beta"))
