"""Each kind of broken bundle is rejected with a message naming the problem, and stores nothing."""

import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml

from models_registry.bundle import BundleError, read_bundle
from models_registry.models import ModelFeature, ModelVersion, RegisteredModel
from models_registry.services import model_register


def _edit_spec(path, change):
    spec = yaml.safe_load((path / "bundle.yaml").read_text())
    change(spec)
    (path / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def _edit_reference(path, change):
    frame = pd.read_parquet(path / "reference.parquet")
    changed = change(frame)
    frame = frame if changed is None else changed
    frame.to_parquet(path / "reference.parquet", index=False)


def _feature(spec, name):
    return next(f for f in spec["features"] if f["name"] == name)


def _missing_file(path):
    (path / "reference.parquet").unlink()


def _malformed_yaml(path):
    (path / "bundle.yaml").write_text("format_version: 1\nname: [icu-mortality-30d\nfeatures: {\n")


def _yaml_alias_bomb(path):
    """447 bytes of nested anchors appended to a valid bundle.yaml (pen test finding 1): safe_load
    would expand them to an 80 MB spec."""
    bomb = "\nlol:\n  a: &a [x, x, x, x, x, x, x, x, x]\n"
    for i, name in enumerate("bcdefgh"):
        prev = "abcdefgh"[i]
        refs = ", ".join([f"*{prev}"] * 9)
        bomb += f"  {name}: &{name} [{refs}]\n"
    with (path / "bundle.yaml").open("a") as handle:
        handle.write(bomb)


def _oversized_yaml(path):
    with (path / "bundle.yaml").open("a") as handle:
        handle.write("\nnotes: |\n" + ("  " + "x" * 1000 + "\n") * 300)


def _wrong_format_version(path):
    _edit_spec(path, lambda spec: spec.update(format_version=2))


def _model_input_not_in_schema(path):
    _edit_spec(path, lambda spec: spec["features"].remove(_feature(spec, "albumin")))


def _schema_feature_not_in_model(path):
    def add(spec):
        spec["features"].insert(
            5,
            {"name": "lactate", "label": "Lactate", "unit": "mmol/L", "kind": "numeric", "range": [0.1, 30]},
        )

    _edit_spec(path, add)


def _leakage_feature_as_input(path):
    _edit_spec(path, lambda spec: _feature(spec, "albumin").update(decision_time=False))


def _inputs_in_wrong_order(path):
    def swap(spec):
        features = spec["features"]
        features[2], features[3] = features[3], features[2]

    _edit_spec(path, swap)


def _categorical_without_categories(path):
    _edit_spec(path, lambda spec: _feature(spec, "cancer").pop("categories"))


def _range_min_not_below_max(path):
    _edit_spec(path, lambda spec: _feature(spec, "sodium").update(range=[160, 120]))


def _expected_outside_range(path):
    _edit_spec(path, lambda spec: _feature(spec, "sodium").update(range=[90, 200], expected=[80, 150]))


def _expected_on_a_binary_feature(path):
    _edit_spec(path, lambda spec: _feature(spec, "dnr_day1").update(expected=[0, 1]))


def _expected_not_a_pair(path):
    _edit_spec(path, lambda spec: _feature(spec, "sodium").update(expected=[150]))


def _fixed_reason_not_a_sentence(path):
    _edit_spec(path, lambda spec: _feature(spec, "age").update(fixed_reason=3))


def _unknown_kind(path):
    _edit_spec(path, lambda spec: _feature(spec, "sodium").update(kind="ordinal"))


def _non_binary_label(path):
    _edit_reference(path, lambda frame: frame.__setitem__("died_30d", frame["died_30d"].replace({1: 2})))


def _missing_label_column(path):
    _edit_reference(path, lambda frame: frame.drop(columns="died_30d"))


def _infinite_reference_value(path):
    def change(frame):
        frame.loc[3, "creatinine"] = np.inf

    _edit_reference(path, change)


def _value_outside_plausible_range(path):
    def change(frame):
        frame.loc[3, "sodium"] = 400.0

    _edit_reference(path, change)


def _expected_risk_not_reproduced(path):
    def change(frame):
        frame.loc[10, "expected_risk"] = frame.loc[10, "expected_risk"] + 1e-3

    _edit_reference(path, change)


def _expected_risk_missing(path):
    _edit_reference(path, lambda frame: frame.drop(columns="expected_risk"))


def _pickle_model_format(path):
    _edit_spec(path, lambda spec: spec["model"].update(format="pickle"))


def _pickled_model_file(path):
    (path / "model.json").write_bytes(pickle.dumps({"trees": []}))


def _skops_declared_for_xgboost_json(path):
    _edit_spec(path, lambda spec: spec["model"].update(format="sklearn-skops"))


def _negative_auroc_margin(path):
    _edit_spec(path, lambda spec: spec.update(promotion={"auroc_margin": -0.05}))


def _model_path_escapes_bundle(path):
    _edit_spec(path, lambda spec: spec["model"].update(path="../model.json"))


def _background_missing_column(path):
    frame = pd.read_parquet(path / "background.parquet").drop(columns="shift")
    frame.to_parquet(path / "background.parquet", index=False)


def _untrusted_challenger(path):
    import skops.io
    from sklearn.ensemble import IsolationForest

    skops.io.dump(IsolationForest(n_estimators=2).fit(np.zeros((4, 1))), path / "challenger.skops")


CASES = [
    (_missing_file, "The bundle has no reference.parquet"),
    (_malformed_yaml, "bundle.yaml is not valid YAML"),
    (_yaml_alias_bomb, "bundle.yaml is not valid YAML: anchors (&name) are not accepted in bundle.yaml"),
    (_oversized_yaml, "at most 262,144 are accepted"),
    (_wrong_format_version, "format_version is 2"),
    (_model_input_not_in_schema, "Model input 'albumin' is not in the bundle.yaml features"),
    (
        _schema_feature_not_in_model,
        "Feature 'lactate' is decision_time: true but is not an input of the model",
    ),
    (_leakage_feature_as_input, "Model input 'albumin' is declared decision_time: false"),
    (_inputs_in_wrong_order, "not in the order the model expects"),
    (
        _categorical_without_categories,
        "feature 'cancer' is categorical and needs a list of distinct categories",
    ),
    (_range_min_not_below_max, "feature 'sodium' range must be [min, max] with min < max"),
    (_expected_outside_range, "feature 'sodium' expected must lie inside its range [90, 200]"),
    (_expected_on_a_binary_feature, "feature 'dnr_day1' expected is for numeric features only"),
    (_expected_not_a_pair, "feature 'sodium' expected must be [low, high] with low < high"),
    (_fixed_reason_not_a_sentence, "feature 'age' fixed_reason must be a sentence"),
    (_unknown_kind, "feature 'sodium' has kind 'ordinal'"),
    (_non_binary_label, "label column 'died_30d' must be binary"),
    (_missing_label_column, "reference.parquet has no label column 'died_30d'"),
    (_infinite_reference_value, "reference.parquet column 'creatinine' has an infinite value"),
    (_value_outside_plausible_range, "reference.parquet column 'sodium' has values from"),
    (_expected_risk_not_reproduced, "does not reproduce expected_risk: largest difference 1.00e-03"),
    (_expected_risk_missing, "reference.parquet has no expected_risk column"),
    (_pickle_model_format, "Unknown model format 'pickle'"),
    (_pickled_model_file, "model.json is a pickle; pickled models are never accepted."),
    (_skops_declared_for_xgboost_json, "model.json is not a readable skops file"),
    (_negative_auroc_margin, "promotion.auroc_margin must be a number from 0 to 0.5"),
    (_model_path_escapes_bundle, "model path '../model.json' points outside the bundle"),
    (_background_missing_column, "background.parquet has no column 'shift'"),
    (_untrusted_challenger, "challenger.skops contains types that are not trusted"),
]


@pytest.mark.parametrize(("breakage", "message"), CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_bad_bundle_is_rejected_and_stores_nothing(db, model_store, bad_bundle, breakage, message):
    path = bad_bundle()
    breakage(path)

    with pytest.raises(BundleError) as error:
        model_register(path=path, promote=True)

    assert message in str(error.value)
    assert RegisteredModel.objects.count() == 0
    assert ModelVersion.objects.count() == 0
    assert ModelFeature.objects.count() == 0


def test_zip_member_escaping_the_folder_is_rejected(db, model_store, demo_bundle_dir, tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in demo_bundle_dir.iterdir():
            zipped.write(file, file.name)
        zipped.writestr("../../escaped.txt", "outside")

    with pytest.raises(
        BundleError, match=r"Zip member '\.\./\.\./escaped\.txt' has a path outside the bundle"
    ):
        model_register(path=archive)

    assert not (tmp_path.parent / "escaped.txt").exists()
    assert RegisteredModel.objects.count() == 0


def test_absolute_zip_member_is_rejected(demo_bundle_dir, tmp_path):
    archive = tmp_path / "absolute.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("/etc/sightline-test", "outside")

    with pytest.raises(BundleError, match="has a path outside the bundle folder"):
        read_bundle(archive)


def test_file_that_is_neither_directory_nor_zip_is_rejected(tmp_path):
    not_a_bundle = tmp_path / "bundle.tar"
    not_a_bundle.write_bytes(b"not a zip")

    with pytest.raises(BundleError, match="neither a bundle directory nor a .zip"):
        read_bundle(not_a_bundle)


def test_read_bundle_records_the_checks(demo_bundle_dir):
    bundle = read_bundle(demo_bundle_dir)

    assert bundle.checks["reproduces_expected_risk"]["max_abs_diff"] <= 1e-5
    assert bundle.checks["reproduces_expected_risk"]["rows"] == len(bundle.reference)
    additivity = bundle.checks["shap_additivity"]
    assert additivity["max_error"] <= 1e-4
    assert additivity["sample_size"] == 200
    assert additivity["background_size"] == len(bundle.background) == 200
    assert bundle.checks["reference_auroc"] > 0.7
    assert bundle.checks["challenger"]["reference_auroc"] > 0.65
    assert len(bundle.bundle_sha256) == 64
