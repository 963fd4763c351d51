"""Serving a registered version: encoding, risk, SHAP, and refusing tampered artifacts."""

import numpy as np
import pytest

from demo import rhc as demo_rhc
from engine import treeshap as core
from models_registry.serving import ArtifactTampered, EncodingError, serving_cache_clear, serving_model


def _payload_values(row, features) -> dict:
    """A reference row as a scoring service would send it: booleans, category names, nulls."""
    values = {}
    for f in features:
        value = row[f.name]
        if np.isnan(value):
            values[f.name] = None
        elif f.kind == "binary":
            values[f.name] = {"value": bool(value)}
        elif f.kind == "categorical":
            values[f.name] = {"value": f.categories[int(value)]}
        else:
            values[f.name] = {"value": float(value)}
    return values


def test_encode_and_predict_reproduce_expected_risk(model_version):
    model = serving_model(model_version)
    reference = model.reference
    features = model_version.input_features()

    rows = np.vstack([model.encode(_payload_values(row, features)) for _, row in reference.iterrows()])

    assert model.feature_names == demo_rhc.INPUT_NAMES
    np.testing.assert_array_equal(rows, reference[model.feature_names].to_numpy(dtype=np.float64))
    risk = model.predict_risk(rows)
    assert np.max(np.abs(risk - reference["expected_risk"].to_numpy())) <= 1e-5
    np.testing.assert_allclose(core.sigmoid(model.predict_margin(rows)), risk)


def _three_inputs(model_format: str = "xgboost", handles_missing: bool = True):
    from engine.encoding import Codec
    from models_registry.formats import TreeModel
    from models_registry.serving import ServingModel

    return ServingModel(
        version_id=0,
        feature_names=["lactate", "dnr", "cancer"],
        model=TreeModel(model_format, None, ["lactate", "dnr", "cancer"], handles_missing=handles_missing),
        background=np.zeros((1, 3)),
        reference=None,
        codecs=[
            Codec("lactate", "numeric", []),
            Codec("dnr", "binary", []),
            Codec("cancer", "categorical", ["No", "Yes", "Metastatic"]),
        ],
    )


def test_encode_maps_binary_categorical_and_missing():
    model = _three_inputs()

    np.testing.assert_array_equal(
        model.encode({"lactate": 4.2, "dnr": True, "cancer": "Metastatic"}), [4.2, 1, 2]
    )
    np.testing.assert_array_equal(model.encode({"dnr": 0, "cancer": {"value": "No"}}), [np.nan, 0, 0])
    np.testing.assert_array_equal(
        model.encode({"lactate": {"value": None}, "dnr": "false"}), [np.nan, 0, np.nan]
    )
    with pytest.raises(EncodingError) as error:
        model.encode({"cancer": "Benign"})
    assert error.value.feature == "cancer"
    with pytest.raises(EncodingError, match="dnr is binary"):
        model.encode({"dnr": "maybe"})
    with pytest.raises(EncodingError, match="lactate must be a number"):
        model.encode({"lactate": "high"})


def test_encode_many_is_encode_row_by_row():
    rows = [
        {"lactate": {"value": 4.2}, "dnr": {"value": 1}, "cancer": {"value": "Metastatic"}},
        {"lactate": 3, "dnr": False, "cancer": None},
        {"lactate": {"value": None}, "dnr": {"value": 0}},
        {"lactate": float("nan"), "dnr": True, "cancer": "No"},
        {"lactate": 0.1 + 0.2, "dnr": 1.0, "cancer": {"value": "Yes"}},
        {},
    ]
    for model in (_three_inputs(), _three_inputs("sklearn-skops")):  # sklearn: float32-rounded
        expected = np.vstack([model.encode(row) for row in rows])
        np.testing.assert_array_equal(model.encode_many(rows), expected)
        assert model.encode_many([]).shape == (0, 3)
    # Values the numpy path does not take go through encode: its conversions and its errors.
    model = _three_inputs()
    np.testing.assert_array_equal(
        model.encode_many([{"lactate": "4.5", "dnr": "true"}, {"dnr": 0}]),
        [[4.5, 1, np.nan], [np.nan, 0, np.nan]],
    )
    for bad, message in [
        ({"cancer": "Benign"}, "cancer must be one of"),
        ({"dnr": 2}, "dnr is binary"),
        ({"lactate": True}, "lactate must be a number"),
        ({"lactate": float("inf")}, "lactate must be a finite number"),
    ]:
        with pytest.raises(EncodingError, match=message):
            model.encode_many([rows[0], bad])
    with pytest.raises(EncodingError, match="lactate is required"):
        _three_inputs(handles_missing=False).encode_many([{"lactate": None, "dnr": 1, "cancer": "No"}])


def test_serving_model_is_cached_per_version(model_version):
    assert serving_model(model_version) is serving_model(model_version)


def test_explainer_uses_the_whole_background_and_adds_up(model_version):
    model = serving_model(model_version)
    rows = model.reference[model.feature_names].to_numpy(dtype=np.float64)[:25]

    attribution = core.explain(model.explainer, rows)

    assert model.background.shape == (model_version.background_size, len(model.feature_names))
    assert attribution.background_size == model_version.background_size
    assert core.check_additivity(attribution, model.predict_margin(rows)) <= 1e-4
    assert model.explainer is model.explainer


@pytest.mark.parametrize("artifact", ["model.json", "background.parquet", "bundle.yaml"])
def test_tampered_artifact_refuses_to_serve(model_version, model_store, artifact):
    stored = model_store / model_version.artifacts[artifact]
    stored.write_bytes(stored.read_bytes() + b" ")
    serving_cache_clear()

    with pytest.raises(ArtifactTampered, match=f"artifact {artifact} .* does not match the sha256"):
        serving_model(model_version)


def test_missing_artifact_refuses_to_serve(model_version, model_store):
    (model_store / model_version.artifacts["reference.parquet"]).unlink()
    serving_cache_clear()

    with pytest.raises(ArtifactTampered, match="artifact reference.parquet is missing"):
        serving_model(model_version)


def test_registering_again_repairs_a_tampered_store(model_version, model_store, demo_bundle_dir):
    from models_registry.services import model_register

    stored = model_store / model_version.artifacts["model.json"]
    stored.write_bytes(b"{}")
    version, created = model_register(path=demo_bundle_dir)
    serving_cache_clear()

    assert (version.pk, created) == (model_version.pk, False)
    assert serving_model(version).feature_names == demo_rhc.INPUT_NAMES


def test_a_version_without_a_fast_engine_proof_is_explained_by_shap_and_the_card_says_so(
    model_version, alice_client
):
    """A version registered before the fast engine existed holds no shap_engine check: it keeps shap."""
    from models_registry.models import ModelVersion

    assert isinstance(serving_model(model_version).explainer, core.GuardedEngine)  # the demo is proved
    checks = {k: v for k, v in model_version.checks.items() if k != "shap_engine"}
    ModelVersion.objects.filter(pk=model_version.pk).update(checks=checks)
    serving_cache_clear()
    model = serving_model(ModelVersion.objects.get(pk=model_version.pk))
    rows = model.reference[model.feature_names].to_numpy(dtype=np.float64)[:5]

    assert model.engine_name == core.ENGINE_REFERENCE
    assert isinstance(model.explainer, core.fastshap.ReferenceEngine)
    assert core.check_additivity(core.explain(model.explainer, rows), model.predict_margin(rows)) <= 1e-4
    page = alice_client.get(
        f"/models/{model_version.registered_model.name}/versions/{model_version.version}/"
    )
    assert (
        "shap.TreeExplainer, interventional (the reference engine) — registered before"
        in page.content.decode()
    )


def test_the_card_names_the_engine_that_explains_the_version(model_version, alice_client):
    page = alice_client.get(
        f"/models/{model_version.registered_model.name}/versions/{model_version.version}/"
    )
    html = page.content.decode()
    assert "Sightline&#x27;s exact interventional TreeSHAP (fast engine, proven equal to shap here)" in html
    assert 'id="shap-engine"' in html
